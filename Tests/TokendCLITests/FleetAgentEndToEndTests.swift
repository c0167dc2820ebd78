import Foundation
import Logging
import Testing
import TokendCore
import TokendFleet
import TokendTestKit
import TokendVault

#if canImport(Glibc)
import Glibc
#endif

/// Two real `tokend serve` processes on one fleet store (the test
/// PostgreSQL cluster of scripts/postgres/start.sh), each with its own
/// socket, as on two hosts.
@Suite(
    "tokend serve on a fleet store end to end",
    .enabled(if: ProcessInfo.processInfo.environment["TOKEND_TEST_POSTGRES_URL"] != nil,
        "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
final class FleetAgentEndToEndTests: Sendable {
    let directory: String
    let schema: String

    init() throws {
        let tag = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        directory = "/tmp/tokend-fleet-e2e-\(tag)"
        schema = "e2e_\(tag)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The configuration of agent `name`: the shared store and key, its own socket.
    func config(_ name: String, endpoint: ScriptedTokenEndpoint) throws -> String {
        let path = "\(directory)/\(name).toml"
        let text = """
            [vault]
            backend = "postgresql"
            path = "\(directory)/\(name)/vault.db"
            key_file = "\(directory)/fleet.key"

            [vault.postgresql]
            socket = "\(environment["TOKEND_TEST_POSTGRES_SOCKET"]!)"
            database = "\(environment["TOKEND_TEST_POSTGRES_DATABASE"]!)"
            user = "\(environment["TOKEND_TEST_POSTGRES_USER"]!)"
            password_file = "\(environment["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!)"
            schema = "\(schema)"
            lease_seconds = 5

            [socket]
            path = "\(directory)/\(name).sock"

            [providers.idp]
            kind = "oauth2"
            token_endpoint = "\(endpoint.url)"
            allow_insecure_http = true
            client_id = "tokend"
            client_secret_file = "\(directory)/client.secret"
            """
        try FileManager.default.createDirectory(atPath: "\(directory)/\(name)", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: "\(directory)/client.secret", contents: Data("client-secret\n".utf8), attributes: [.posixPermissions: 0o600])
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// The fleet store, created with the library, and one identity in it.
    func prepareStore() async throws {
        let settings = FleetSettings(
            endpoint: .unixSocket(path: environment["TOKEND_TEST_POSTGRES_SOCKET"]!),
            database: environment["TOKEND_TEST_POSTGRES_DATABASE"]!, user: environment["TOKEND_TEST_POSTGRES_USER"]!,
            password: .file(environment["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!), schema: schema)
        let kek = try KeyEncryptionKey.generate(at: "\(directory)/fleet.key")
        let vault = try await PostgresVault.create(settings: settings, kek: kek)
        try await vault.enroll(Enrollment(
            name: IdentityName("alice")!, provider: "idp", refreshToken: Secret("rt-alice"),
            accessToken: Secret("at-first"), accessTokenExpiresAt: Date().addingTimeInterval(3600)))
        await vault.close()
    }

    static func get(_ config: String) async throws -> String {
        try await CommandRunner.tokend(["get", "alice", "--config", config]).stdout
    }

    @Test func aRefreshOnOneAgentIsServedByTheOtherAndTheProviderIsCalledOnce() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepareStore()
        let configA = try config("a", endpoint: endpoint)
        let configB = try config("b", endpoint: endpoint)
        let a = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", configA], output: directory + "/a.log")
        let b = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", configB], output: directory + "/b.log")
        let sockets = ["\(directory)/a.sock", "\(directory)/b.sock"]
        #expect(await eventually(timeout: .seconds(30)) { sockets.allSatisfy { FileManager.default.fileExists(atPath: $0) } }, "\(a.output) \(b.output)")

        #expect(try await Self.get(configA) == "at-first\n", "\(a.output)")
        #expect(try await Self.get(configB) == "at-first\n", "\(b.output)")

        // An admin forces a refresh through agent a: b learns of it from
        // the store and serves the same token, without a provider call.
        let refreshed = try await CommandRunner.tokend(["refresh", "alice", "--config", configA])
        #expect(refreshed.status == 0, "\(refreshed.stderr) \(a.output)")
        let token = try await Self.get(configA)
        #expect(token.hasPrefix("at-rt-alice-"))
        #expect(await eventually(timeout: .seconds(10)) { (try? await Self.get(configB)) == token }, "\(b.output)")
        #expect(endpoint.totalRequests == 1)
        // And the other way round: b refreshes, a follows.
        #expect(try await CommandRunner.tokend(["refresh", "alice", "--config", configB]).status == 0)
        let second = try await Self.get(configB)
        #expect(second != token)
        #expect(await eventually(timeout: .seconds(10)) { (try? await Self.get(configA)) == second }, "\(a.output)")
        #expect(endpoint.totalRequests == 2)

        for agent in [a, b] { agent.signal(SIGTERM) }
        for agent in [a, b] {
            let exit = await agent.wait(timeout: .seconds(10))
            #expect(exit == 0, "\(agent.output)")
            if exit == nil { await agent.kill() }
        }
        #expect(!a.output.contains("rt-alice") && !b.output.contains("at-rt-alice"), "no token in the logs")
        await endpoint.shutdown()
    }
}
