import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `REMOVE logout=1` against the fake Transmit server, and the metrics
/// endpoint on a Unix socket with its `tokend_connections` gauge
/// (docs/PROTOCOL.md "REMOVE"; docs/operations.md "Metrics").
@Suite("remove with logout, metrics on a Unix socket", .serialized)
final class RemoveAndMetricsTests {
    let sandbox: AgentSandbox

    init() throws {
        sandbox = try AgentSandbox("remove")
    }

    @Test func removeWithLogoutEndsTheSessionAndAFailedLogoutKeepsTheIdentity() async throws {
        let fake = try await FakeTransmitServer.start()
        sandbox.writeConfig(sandbox.transmitProvider(fake))
        try await sandbox.initVault()
        var sessions: [String: String] = [:]
        var lines: [String] = []
        for name in ["by-verb", "by-command", "kept", "plain"] {
            let (refreshToken, sessionID) = fake.mintSession(userID: "user-\(name)")
            sessions[name] = sessionID
            lines.append(importLine([
                "name": name, "provider": "transmit", "refresh_token": refreshToken, "session_id": sessionID,
                "access_token": "at-\(name)", "expires_in": 3600,
            ]))
        }
        let imported = try await sandbox.importLines(lines)
        try #require(imported.status == 0, "\(imported.stderr)")
        let agent = try await sandbox.startAgent()
        let logoutPath = "/cis/v1/auth/session/logout"

        // The verb: the provider session ends, then the identity goes.
        #expect(try await sandbox.ask("REMOVE by-verb logout=1") == "OK removed", "\(agent.output)")
        #expect(fake.requestCount(logoutPath) == 1)
        #expect(!fake.isSessionActive(sessions["by-verb"]!), "the fake saw this session's logout")
        #expect(fake.isSessionActive(sessions["kept"]!) && fake.isSessionActive(sessions["plain"]!), "and no other")
        #expect(try await sandbox.ask("GET by-verb") == "ERR not_found no identity by-verb")

        // The command.
        let removed = try await CommandRunner.tokend(["remove", "by-command", "--logout", "--socket", sandbox.socket])
        #expect(removed.status == 0 && removed.stdout == "removed by-command\n", "\(removed.stderr)")
        #expect(!fake.isSessionActive(sessions["by-command"]!))
        #expect(try await sandbox.ask("GET by-command") == "ERR not_found no identity by-command")

        // A logout the provider fails: exit 12, the identity and its session stay.
        fake.inject(.status(503), path: logoutPath)
        let failed = try await CommandRunner.tokend(["remove", "kept", "--logout", "--socket", sandbox.socket])
        #expect(failed.status == 12, "\(failed.status) \(failed.stderr)")
        #expect(failed.stderr.contains("logout failed, identity kept"), "\(failed.stderr)")
        #expect(fake.isSessionActive(sessions["kept"]!))
        #expect(try await sandbox.ask("GET kept")?.hasPrefix("OK at-kept ") == true)

        // Without logout=1 the provider is not asked.
        let logouts = fake.requestCount(logoutPath)
        #expect(try await sandbox.ask("REMOVE plain") == "OK removed")
        #expect(fake.requestCount(logoutPath) == logouts)
        #expect(fake.isSessionActive(sessions["plain"]!))

        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        let list = try await CommandRunner.tokend(["vault", "list", "--config", sandbox.config])
        #expect(list.stdout.contains("kept") && !list.stdout.contains("by-verb") && !list.stdout.contains("by-command"), "\(list.stdout)")
        #expect(!list.stdout.contains("plain"), "\(list.stdout)")
        await fake.shutdown()
    }

    /// Scrapes `GET /metrics` over the Unix socket with Python's
    /// http.client (python3 is installed by scripts/setup.sh; curl may not be).
    static func scrape(_ path: String) async throws -> String {
        let script = """
            import http.client, socket, sys
            class UnixConnection(http.client.HTTPConnection):
                def connect(self):
                    self.sock = socket.socket(socket.AF_UNIX)
                    self.sock.settimeout(10)
                    self.sock.connect(sys.argv[1])
            connection = UnixConnection("localhost")
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read().decode()
            sys.stdout.write(body if response.status == 200 else "")
            """
        return try await CommandRunner.run("/usr/bin/python3", ["-c", script, path]).stdout
    }

    /// The value of the `tokend_connections` gauge, scraped now.
    static func connections(_ path: String) async -> Double? {
        gauge((try? await scrape(path)) ?? "", "tokend_connections")
    }

    static func gauge(_ text: String, _ name: String) -> Double? {
        text.split(separator: "\n").lazy.compactMap { line -> Double? in
            let fields = line.split(separator: " ")
            return fields.count == 2 && fields[0] == name ? Double(fields[1]) : nil
        }.first
    }

    @Test func metricsOnAUnixSocketCountOpenConnections() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        let metricsSocket = sandbox.directory + "/metrics.sock"
        sandbox.writeConfig(sandbox.oauthProvider(endpoint) + "\n\n[metrics]\nsocket = \"\(metricsSocket)\"\n")
        try await sandbox.initVault()
        let agent = try await sandbox.startAgent()

        #expect(await eventually { await Self.connections(metricsSocket) == 0 }, "\(agent.output)")
        let first = try await Self.scrape(metricsSocket)
        #expect(first.contains("# TYPE tokend_connections gauge"), "\(first)")

        // Three clients connect and are answered: the gauge says 3.
        let socket = sandbox.socket
        do {
            let clients = try await blocking {
                try (0..<3).map { _ in
                    let client = try TestClient(path: socket)
                    guard client.request("PING") == "OK PONG" else { throw SandboxFailure("no PONG") }
                    return client
                }
            }
            #expect(await eventually { await Self.connections(metricsSocket) == 3 })
            // STATS, on a fourth connection, agrees.
            let stats = try #require(try await sandbox.ask("STATS"))
            #expect(stats.contains(" connections=4 "), "\(stats)")

            withExtendedLifetime(clients) {}
        }
        // Closed: the gauge goes back to 0.
        #expect(await eventually { await Self.connections(metricsSocket) == 0 })
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }
}
