import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// SSO across apps, end to end: two apps (clients) of one Transmit tenant
/// on the fake server, one user session, the real agent and CLI.
@Suite("Shared Transmit sessions (SSO across apps)", .serialized)
final class SharedSessionTests: @unchecked Sendable {
    // @unchecked: its fields are set once at init.
    static let app2 = "tokend-app2-client"
    let directory = "/tmp/tokend-sso-\(UUID().uuidString.prefix(8))"
    var config: String { directory + "/tokend.toml" }
    var socket: String { directory + "/tokend.sock" }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func prepare(_ fake: FakeTransmitServer) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (file, secret) in [("app1.secret", FakeTransmitServer.clientSecret), ("app2.secret", "app2-secret")] {
            FileManager.default.createFile(
                atPath: directory + "/" + file, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600])
        }
        fake.addApp(clientID: Self.app2, secret: "app2-secret")
        _ = FileManager.default.createFile(atPath: config, contents: Data((
            CommandRunner.configHeader(directory: directory, socket: socket) + """
            [providers.app1]
            kind = "transmit"
            base_url = "\(fake.baseURL)"
            allow_insecure_http = true
            client_id = "\(FakeTransmitServer.clientID)"
            client_secret_file = "\(directory)/app1.secret"

            [providers.app2]
            kind = "transmit"
            base_url = "\(fake.baseURL)"
            allow_insecure_http = true
            client_id = "\(Self.app2)"
            client_secret_file = "\(directory)/app2.secret"
            """).utf8))
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let (refreshToken, sessionID) = fake.mintSession(userID: "user-7")
        let line = #"{"name": "billing-app1", "provider": "app1", "refresh_token": "\#(refreshToken)", "session_id": "\#(sessionID)"}"#
        let imported = try await CommandRunner.tokend(["vault", "import", "--config", config], stdin: Data((line + "\n").utf8))
        #expect(imported.status == 0, "\(imported.stderr)")
    }

    func tokend(_ arguments: [String]) async throws -> CommandRunner.Result {
        try await CommandRunner.tokend(arguments + ["--socket", socket])
    }

    func status(_ identity: String) async throws -> [String: String] {
        let reply = try await tokend(["status", identity])
        // `key: value` lines, one per STATUS field.
        return Dictionary(
            reply.stdout.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: ":", maxSplits: 1)
                return parts.count == 2 ? (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)) : nil
            }, uniquingKeysWith: { a, _ in a })
    }

    @Test func aSecondAppJoinsTheSessionAndTheyShareOneFate() async throws {
        let fake = try await FakeTransmitServer.start()
        try await prepare(fake)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) }, "\(agent.output)")

        let first = try await tokend(["get", "billing-app1"])
        #expect(first.stdout.hasPrefix("at-\(FakeTransmitServer.clientID)-"), "\(first.stdout) \(first.stderr)")

        // The second app joins with one command; no session id on any command line.
        let joined = try await tokend(["enroll", "billing-app2", "--provider", "app2", "--from", "billing-app1"])
        #expect(joined.status == 0, "\(joined.stderr) \(agent.output)")
        let second = try await tokend(["get", "billing-app2"])
        #expect(second.stdout.hasPrefix("at-\(Self.app2)-"), "its own token, from its own client: \(second.stdout) \(second.stderr)")

        // Visibility without disclosure.
        let status1 = try await status("billing-app1")
        let status2 = try await status("billing-app2")
        let session = try #require(status1["session"], "\(status1)")
        #expect(status2["session"] == session)
        #expect(status1["session_identities"] == "2")
        #expect(status2["session_with"] == "billing-app1,billing-app2")
        let list = try await CommandRunner.tokend(["vault", "list", "--config", config])
        #expect(list.stdout.split(separator: "\n").filter { $0.hasSuffix("\t\(session)") }.count == 2, "\(list.stdout)")
        let sessions = try await CommandRunner.tokend(["vault", "sessions", "--config", config])
        #expect(sessions.stdout.contains("\(session)\tactive\tbilling-app1(app1),billing-app2(app2)"), "\(sessions.stdout)")
        #expect(!list.stdout.contains("sid-") && !sessions.stdout.contains("sid-"), "never the session id")

        // Logout that respects sharing.
        let refused = try await tokend(["remove", "billing-app1", "--logout"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("billing-app2"), "\(refused.stderr)")
        #expect(try await tokend(["get", "billing-app1"]).status == 0, "refused means kept")

        // A WATCH on the second app, then the user signs out elsewhere.
        let watch = directory + "/watch.out"
        let watcher = try ChildProcess(
            "/usr/bin/python3",
            ["-c", """
                import socket, sys
                s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"WATCH billing-app2\\n")
                for line in s.makefile("rb"): print(line.decode().strip(), flush=True)
                """, socket],
            output: watch)
        #expect(await eventually { watcher.output.contains("OK at-") })
        fake.revokeUserSessions("user-7")
        // The first app learns it (a refresh); the second shares its fate at once.
        _ = try await tokend(["refresh", "billing-app1"])
        #expect(await eventually { (try? await self.status("billing-app1"))?["state"] == "reauth_required" })
        let after = try await status("billing-app2")
        #expect(after["state"] == "reauth_required", "\(after)")
        #expect(after["last_error"] == "session_ended", "\(after)")
        #expect(await eventually { watcher.output.contains("stale=1") }, "WATCH clients are told: \(watcher.output)")
        let ended = try await CommandRunner.tokend(["vault", "sessions", "--config", config])
        #expect(ended.stdout.contains("\(session)\tended\t"), "\(ended.stdout)")

        // Ending it for all is explicit.
        let all = try await tokend(["remove", "billing-app1", "--logout-all"])
        #expect(all.status == 0, "\(all.stderr)")
        await watcher.kill()
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
        await fake.shutdown()
    }

    @Test func joiningIsRefusedAcrossTenantsAndWithoutASession() async throws {
        let fake = try await FakeTransmitServer.start()
        try await prepare(fake)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) }, "\(agent.output)")
        let missing = try await tokend(["enroll", "x", "--provider", "app2", "--from", "nobody"])
        #expect(missing.status == 15, "\(missing.stderr)")
        let withSecret = try await CommandRunner.tokend(
            ["enroll", "x", "--provider", "app2", "--from", "billing-app1", "--session-id-stdin", "--socket", socket],
            stdin: Data("sid\n".utf8))
        #expect(withSecret.status == 64, "\(withSecret.stderr)")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
        await fake.shutdown()
    }
}
