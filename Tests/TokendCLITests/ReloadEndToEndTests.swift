import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The agent as an operator runs it: `tokend serve` with providers for the
/// fake Transmit server and django-oauth-toolkit, identities declared in
/// the file (one with a token file) and one enrolled with the CLI; then a
/// SIGHUP with an edited file, then SIGTERM.
@Suite(
    "tokend serve: configured identities, reload and shutdown",
    .enabled(if: ProcessInfo.processInfo.environment["TOKEND_TEST_OAUTH2_URL"] != nil && getuid() == 0,
             "needs django-oauth-toolkit (scripts/test.sh starts it) and root (to act as another user)"))
final class ReloadEndToEndTests {
    static let reader = "tokend-e2e-reader"
    let directory = "/tmp/tokend-reload-\(UUID().uuidString.prefix(8))"
    var config: String { directory + "/tokend.toml" }
    var socket: String { directory + "/tokend.sock" }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func writeConfig(transmitURL: String, identities: String) {
        let dot = ProcessInfo.processInfo.environment["TOKEND_TEST_OAUTH2_URL"]!
        _ = FileManager.default.createFile(atPath: config, contents: Data("""
            [vault]
            path = "\(directory)/vault.db"
            key_file = "\(directory)/vault.key"

            [socket]
            path = "\(socket)"
            mode = "0660"

            [providers.transmit]
            kind = "transmit"
            base_url = "\(transmitURL)"
            allow_insecure_http = true
            client_id = "\(FakeTransmitServer.clientID)"
            client_secret_file = "\(directory)/transmit.secret"

            [providers.dot]
            kind = "oauth2"
            token_endpoint = "\(dot)/o/token/"
            client_id = "tokend-cc"
            client_secret_file = "\(directory)/dot.secret"
            allow_insecure_http = true

            \(identities)
            """.utf8))
    }

    /// `GET` as the unprivileged test user, through socat.
    func getAsReader(_ identity: String) async throws -> String {
        try await Self.get(identity, socket: socket)
    }

    static func get(_ identity: String, socket: String) async throws -> String {
        try await CommandRunner.run(
            "/usr/bin/setpriv",
            ["--reuid=\(Self.reader)", "--regid=\(Self.reader)", "--init-groups", "/usr/bin/socat", "-t", "10", "-", "UNIX-CONNECT:\(socket)"],
            stdin: Data("GET \(identity)\n".utf8)
        ).stdout.trimmingCharacters(in: .newlines)
    }

    @Test func identitiesFollowTheFileAcrossSIGHUPAndSIGTERMStopsCleanly() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        if try await CommandRunner.run("/usr/bin/id", ["-u", Self.reader]).status != 0 {
            _ = try await CommandRunner.run("/usr/sbin/useradd", ["-M", "-s", "/usr/sbin/nologin", Self.reader])
        }
        let readerUID = try await CommandRunner.run("/usr/bin/id", ["-u", Self.reader]).stdout.trimmingCharacters(in: .newlines)
        for (file, secret) in [("transmit.secret", FakeTransmitServer.clientSecret), ("dot.secret", "tokend-cc-secret")] {
            _ = FileManager.default.createFile(atPath: "\(directory)/\(file)", contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
        }
        let fake = try await FakeTransmitServer.start()
        let tokenFile = directory + "/svc-dot.token"
        writeConfig(transmitURL: fake.baseURL, identities: """
            [identities.svc-dot]
            provider = "dot"
            allow = ["user:\(Self.reader)"]
            token_file = "\(tokenFile)"

            [identities.svc-old]
            provider = "dot"
            allow = ["uid:\(readerUID)"]
            """)
        #expect(try await CommandRunner.tokend(["check-config", "--config", config]).status == 0)
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        let socketPath = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: socketPath) }, "\(agent.output)")
        // The socket is 0660: give it the reader's group so the reader may connect.
        chown(socketPath, UInt32.max, try await groupOf(Self.reader))

        // Enroll a Transmit user through the CLI, secrets on stdin.
        let (refreshToken, sessionID) = fake.mintSession(userID: "user-42")
        let enrolled = try await CommandRunner.tokend(
            ["enroll", "user-42", "--provider", "transmit", "--refresh-token-stdin", "--session-id-stdin", "--allow", "uid:\(readerUID)",
             "--config", config],
            stdin: Data("\(refreshToken)\n\(sessionID)\n".utf8))
        #expect(enrolled.status == 0, "\(enrolled.stderr)")
        #expect(try await getAsReader("user-42").hasPrefix("OK at-"))
        #expect(try await getAsReader("svc-dot").hasPrefix("OK "), "\(agent.output)")
        #expect(try await getAsReader("svc-old").hasPrefix("OK "))
        #expect(try await getAsReader("svc-new") == "ERR forbidden identity not permitted for uid \(readerUID)")

        // The token file holds the token GET serves, mode 0600. The test
        // server's tokens live 5 s, so the token is refreshed every few
        // seconds: compare the file with what GET serves at that moment.
        let configPath = config
        let matched = await eventually(timeout: .seconds(30)) {
            guard let served = try? await CommandRunner.tokend(["get", "svc-dot", "--config", configPath]),
                  served.status == 0, !served.stdout.isEmpty
            else { return false }
            return (try? String(contentsOfFile: tokenFile, encoding: .utf8)) == served.stdout
        }
        #expect(matched, "the token file never matched what GET serves: \(agent.output)")
        #expect(try FileManager.default.attributesOfItem(atPath: tokenFile)[.posixPermissions] as? Int == 0o600)

        // A connection opened before the reload stays open through it.
        let open = try TestClient(path: socket)
        #expect(try await blocking { open.request("PING") } == "OK PONG")

        writeConfig(transmitURL: fake.baseURL, identities: """
            [identities.svc-dot]
            provider = "dot"
            allow = ["user:\(Self.reader)"]
            token_file = "\(tokenFile)"

            [identities.svc-new]
            provider = "transmit"
            allow = ["uid:\(readerUID)"]
            """)
        agent.signal(SIGHUP)
        #expect(await eventually { ((try? await Self.get("svc-new", socket: socketPath)) ?? "").hasPrefix("OK ct-") }, "\(agent.output)")
        #expect(try await getAsReader("svc-old") == "ERR forbidden identity not permitted for uid \(readerUID)")
        #expect(try await getAsReader("user-42").hasPrefix("OK at-"), "identities enrolled at run time are kept")
        #expect(try await blocking { open.request("PING") } == "OK PONG", "the connection survived the reload")

        // A broken file is rejected and the running configuration kept.
        _ = FileManager.default.createFile(atPath: config, contents: Data("[vault\n".utf8))
        let rejected = try await CommandRunner.tokend(["reload", "--socket", socket])
        #expect(rejected.status == 16)
        #expect(rejected.stderr.contains("configuration rejected, old one kept"))
        #expect(try await getAsReader("svc-new").hasPrefix("OK ct-"))

        agent.signal(SIGTERM)
        // A refresh under way when the signal comes is finished first
        // (the test server's tokens live 5 s, so one often is).
        #expect(await agent.wait(timeout: .seconds(30)) == 0, "\(agent.output)")
        #expect(!FileManager.default.fileExists(atPath: socket))
        let list = try await CommandRunner.tokend(["vault", "list", "--vault", directory + "/vault.db", "--key-file", directory + "/vault.key"])
        #expect(list.stdout.contains("svc-new\ttransmit") && !list.stdout.contains("svc-old"))
        #expect(try await CommandRunner.tokend(["vault", "verify", "--vault", directory + "/vault.db", "--key-file", directory + "/vault.key"]).status == 0)
        await fake.shutdown()
    }

    func groupOf(_ user: String) async throws -> UInt32 {
        UInt32(try await CommandRunner.run("/usr/bin/id", ["-g", user]).stdout.trimmingCharacters(in: .newlines)) ?? UInt32.max
    }
}
