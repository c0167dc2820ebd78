import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The real `tokend serve` binary with a config pointing at the fake
/// Transmit server: clients fetch tokens the ways README.md and docs/PROTOCOL.md show.
@Suite("tokend serve end to end", .serialized)
final class AgentEndToEndTests {
    let directory: String
    var configPath: String { directory + "/tokend.toml" }
    var socketPath: String { directory + "/tokend.sock" }

    init() throws {
        directory = "/tmp/tokend-e2e-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: directory + "/transmit.secret", contents: Data(FakeTransmitServer.clientSecret.utf8),
            attributes: [.posixPermissions: 0o600])
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Config, vault and one enrolled identity with a live session at the fake.
    func prepare(_ fake: FakeTransmitServer, extra: String = "") async throws {
        let text = CommandRunner.configHeader(directory: directory, socket: socketPath)
            + "\n" + CommandRunner.transmitProvider(fake, directory: directory) + "\n" + extra + "\n"
        _ = FileManager.default.createFile(atPath: configPath, contents: Data(text.utf8))
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", configPath]).status == 0)
        let (refreshToken, sessionID) = fake.mintSession(userID: "user-7")
        let line = #"{"name": "billing-worker", "provider": "transmit", "refresh_token": "\#(refreshToken)", "session_id": "\#(sessionID)"}"#
        let imported = try await CommandRunner.tokend(["vault", "import", "--config", configPath], stdin: Data((line + "\n").utf8))
        #expect(imported.status == 0, "\(imported.stderr)")
    }

    func shell(_ command: String) async throws -> String {
        try await CommandRunner.run("/bin/sh", ["-c", command]).stdout
    }

    @Test func clientsGetTokensAndSIGTERMStopsCleanly() async throws {
        let fake = try await FakeTransmitServer.start()
        try await prepare(fake)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", configPath], output: directory + "/agent.log")
        let socket = socketPath
        #expect(await eventually { FileManager.default.fileExists(atPath: socket) })

        let token = try await CommandRunner.tokend(["get", "billing-worker", "--config", configPath])
        #expect(token.status == 0, "\(token.stderr) \(agent.output)")
        #expect(token.stdout.hasPrefix("at-"), "the first token was fetched on demand")
        let header = try await CommandRunner.tokend(["get", "billing-worker", "--socket", socketPath, "--format", "header"])
        #expect(header.stdout == "Authorization: Bearer \(token.stdout)")

        // Exactly as README.md and docs/PROTOCOL.md show.
        let socat = try await shell("printf 'GET billing-worker\\n' | socat -t 30 - UNIX-CONNECT:\(socketPath)")
        #expect(socat.hasPrefix("OK \(token.stdout.dropLast()) "))
        let python = try await shell("""
            python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect("\(socketPath)"); s.sendall(b"GET billing-worker\\n"); print(s.makefile().readline().split()[0])'
            """)
        #expect(python == "OK\n")
        let missing = try await CommandRunner.tokend(["get", "nope", "--config", configPath])
        #expect(missing.status == 15, "root is an admin, so an unknown name is not_found")
        let status = try await CommandRunner.tokend(["status", "billing-worker", "--config", configPath])
        #expect(status.stdout.contains("state: fresh"))
        #expect(status.stdout.contains("provider: transmit"))

        agent.signal(SIGTERM)
        let exit = await agent.wait(timeout: .seconds(30))
        #expect(exit == 0, "\(agent.output)")
        #expect(!FileManager.default.fileExists(atPath: socketPath), "the socket file is removed")
        let verify = try await CommandRunner.tokend(["vault", "verify", "--config", configPath])
        #expect(verify.status == 0)
        let unreachable = try await CommandRunner.tokend(["get", "billing-worker", "--config", configPath])
        #expect(unreachable.status == 14)
        if exit == nil { await agent.kill() }
        await fake.shutdown()
    }

    @Test func metricsAreServedInThePrometheusTextFormat() async throws {
        let fake = try await FakeTransmitServer.start()
        let port = Int.random(in: 20_000...60_000)
        try await prepare(fake, extra: "\n[metrics]\nlisten = \"127.0.0.1:\(port)\"\n")
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", configPath], output: directory + "/agent.log")
        let socket = socketPath
        #expect(await eventually { FileManager.default.fileExists(atPath: socket) })
        #expect(try await CommandRunner.tokend(["get", "billing-worker", "--config", configPath]).status == 0)
        _ = try await CommandRunner.tokend(["get", "nope", "--config", configPath])
        let scrape = try await shell("python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:\(port)/metrics\").read().decode())'")
        // Every line is a comment or a sample `name{labels} value`.
        let sample = #/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+Inf-]+$/#
        let lines = scrape.split(separator: "\n").filter { !$0.isEmpty }
        #expect(!lines.isEmpty, "\(agent.output)")
        for line in lines where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: sample) != nil, "not Prometheus text: \(line)")
        }
        #expect(lines.contains("tokend_identities{state=\"fresh\"} 1.0"))
        #expect(lines.contains("tokend_get_requests_total{result=\"ok\"} 1"))
        #expect(lines.contains("tokend_get_requests_total{result=\"not_found\"} 1"))
        #expect(lines.contains { $0.hasPrefix("tokend_refreshes_total{") && $0.contains("outcome=\"success\"") && $0.hasSuffix(" 1") })
        #expect(lines.contains { $0.hasPrefix("tokend_refresh_duration_seconds_bucket{") })
        #expect(lines.contains { $0.hasPrefix("tokend_soonest_expiry_seconds ") })
        #expect(lines.contains("# TYPE tokend_get_requests_total counter"))
        await agent.kill()
        await fake.shutdown()
    }

    @Test func socketActivationHandsTheAgentItsSocket() async throws {
        let fake = try await FakeTransmitServer.start()
        try await prepare(fake)
        let activator = try ChildProcess(
            "/usr/bin/systemd-socket-activate", ["-l", socketPath, CommandRunner.tokendPath, "serve", "--config", configPath],
            output: directory + "/activate.log")
        let socket = socketPath
        #expect(await eventually { FileManager.default.fileExists(atPath: socket) })
        // A client that waits for its reply line, however long the agent
        // takes to start (socat would give up 0.5 s after its input ends).
        let reply = try await CommandRunner.run("/usr/bin/python3", [
            "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                + "s.sendall(b'GET billing-worker\\n'); print(s.makefile().readline(), end='')",
            socketPath,
        ]).stdout
        #expect(reply.hasPrefix("OK at-"), "\(activator.output)")
        #expect(activator.output.contains("listening on the socket passed by systemd"))
        await activator.kill()
        await fake.shutdown()
    }
}
