import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `tokend health` and `tokend get --wait` on the real binary: against a
/// real agent whose OAuth2 provider (scripts/container/fake-oauth2.py, real
/// HTTP on loopback) holds or fails token requests on command, and against
/// sockets that answer garbage or nothing at all.
@Suite("tokend health and get --wait", .serialized)
final class HealthAndWaitTests {
    static let fakeProvider = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/container/fake-oauth2.py").path
    let directory = "/tmp/tokend-health-\(UUID().uuidString.prefix(8))"
    var config: String { directory + "/tokend.toml" }
    var socket: String { directory + "/tokend.sock" }
    var children: [ChildProcess] = []

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        for child in children { child.signal(SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Starts the fake provider (token requests held until `/release`) and
    /// writes a config with one client-credentials identity; returns the
    /// provider's base URL.
    func startProvider() async throws -> String {
        let secret = "health-test-secret"
        _ = FileManager.default.createFile(
            atPath: directory + "/corp.secret", contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600])
        let log = directory + "/provider.log"
        let provider = try ChildProcess(
            "/usr/bin/env", ["python3", Self.fakeProvider, "--client-secret-file", directory + "/corp.secret", "--hold"], output: log)
        children.append(provider)
        let port = await eventuallyValue {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
                .first { $0.hasPrefix("port=") }.map { String($0.dropFirst(5)) }
        }
        let url = "http://127.0.0.1:\(try #require(port, "the fake provider did not start"))"
        _ = FileManager.default.createFile(atPath: config, contents: Data("""
            [vault]
            path = "\(directory)/vault.db"
            key_file = "\(directory)/vault.key"

            [socket]
            path = "\(socket)"

            [providers.corp]
            kind = "oauth2"
            token_endpoint = "\(url)/token"
            client_id = "tokend-container-test"
            client_secret_file = "\(directory)/corp.secret"
            allow_insecure_http = true
            timeout = 120

            [identities.billing]
            provider = "corp"
            grant = "client_credentials"
            """.utf8))
        let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        _ = FileManager.default.createFile(atPath: directory + "/vault.key", contents: Data(key), attributes: [.posixPermissions: 0o600])
        return url
    }

    func post(_ url: String) async throws {
        let result = try await CommandRunner.run(
            "/usr/bin/env", ["python3", "-c", "import urllib.request, sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='POST'))", url])
        #expect(result.status == 0, "\(result.stderr)")
    }

    func health(_ extra: [String] = []) async throws -> CommandRunner.Result {
        try await Self.health(config: config, extra)
    }

    static func health(config: String, _ extra: [String] = []) async throws -> CommandRunner.Result {
        try await CommandRunner.tokend(["health", "--config", config] + extra)
    }

    func startAgent() throws -> ChildProcess {
        let agent = try ChildProcess(
            CommandRunner.tokendPath, ["serve", "--config", config, "--create-vault"], output: directory + "/agent.log")
        children.append(agent)
        return agent
    }

    @Test func healthFollowsTheAgentFromStartingToReadyToDegradedToDown() async throws {
        let provider = try await startProvider()
        let before = try await health()
        #expect(before.status == 14 && before.stdout.hasPrefix("down: "), "\(before.stdout)")

        let agent = try startAgent()
        let config = config
        #expect(await eventually(timeout: .seconds(60)) { (try? await Self.health(config: config).status) != 14 }, "\(agent.output)")
        // The provider holds the first token request: the agent answers but serves nothing yet.
        let starting = try await health()
        #expect(starting.status == 17, "\(starting.stdout) \(agent.output)")
        #expect(starting.stdout == "starting: 1 of 1 identities have no token yet\n")
        #expect(try await health(["--live"]).status == 0, "a starting agent is alive")

        try await post(provider + "/release")
        let token = try await CommandRunner.tokend(["get", "billing", "--config", config, "--wait", "60"])
        #expect(token.status == 0, "\(token.stderr)")
        #expect(token.stdout.hasPrefix("fake-at-1-"))
        let ready = try await health()
        #expect(ready.status == 0, "\(ready.stdout)")
        #expect(ready.stdout == "ready: 1 identity with valid tokens\n")

        try await post(provider + "/fail")
        _ = try await CommandRunner.tokend(["refresh", "billing", "--config", config])
        let degraded = try await health()
        #expect(degraded.status == 18, "\(degraded.stdout)")
        // Stale, or (while the engine retries) refreshing with failures.
        #expect(degraded.stdout == "degraded: 1 stale\n" || degraded.stdout == "degraded: 1 failing\n", "\(degraded.stdout)")
        #expect(try await health(["--live"]).status == 0, "a degraded agent is alive: restarting it would not help")

        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(30)) == 0, "\(agent.output)")
        let down = try await health(["--live"])
        #expect(down.status == 14 && down.stdout.hasPrefix("down: "), "\(down.stdout)")
        #expect(!agent.output.contains("health-test-secret") && !agent.output.contains(token.stdout.trimmingCharacters(in: .newlines)))
    }

    @Test func getWaitWaitsForAnAgentThatIsNotThereYet() async throws {
        let provider = try await startProvider()
        try await post(provider + "/release")
        let config = config
        let waiting = Task { try await CommandRunner.tokend(["get", "billing", "--config", config, "--wait", "120"]) }
        // The client must be waiting (retrying its connect) before the agent exists.
        #expect(await eventually(timeout: .seconds(30)) {
            (try? await CommandRunner.run("/usr/bin/pgrep", ["-f", "get billing --config \(config) --wait 120"]).status) == 0
        })
        _ = try startAgent()
        let token = try await waiting.value
        #expect(token.status == 0, "\(token.stderr)")
        #expect(token.stdout.hasPrefix("fake-at-1-"))
    }

    @Test func getWaitEndsAtOnceWhenWaitingCannotHelpAndGivesUpOtherwise() async throws {
        let provider = try await startProvider()
        try await post(provider + "/release")
        let agent = try startAgent()
        let config = config
        #expect(await eventually(timeout: .seconds(60)) { (try? await Self.health(config: config).status) == 0 }, "\(agent.output)")
        // Root is an admin, so an unknown name is not_found: final, not retried.
        let missing = try await CommandRunner.tokend(["get", "nope", "--config", config, "--wait", "120"])
        #expect(missing.status == 15)
        #expect(missing.stderr.contains("not_found") && !missing.stderr.contains("gave up"), "\(missing.stderr)")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(30)) == 0)
        let gone = try await CommandRunner.tokend(["get", "billing", "--config", config, "--wait", "0.3"])
        #expect(gone.status == 14)
        #expect(gone.stderr.contains("gave up after 0.3 s"), "\(gone.stderr)")
    }

    @Test(arguments: ["", "-1", "abc", "nan", "inf", "1e9", "86401", "0x10", "5\u{7}"])
    func brokenWaitValuesAreUsageErrors(_ value: String) async throws {
        let result = try await CommandRunner.tokend(["get", "billing", "--socket", socket, "--wait", value])
        #expect(result.status == 64, "--wait '\(value)': \(result.stderr)")
    }

    @Test(arguments: ["", "0", "-1", "abc", "nan", "301", "1e300"])
    func brokenTimeoutValuesAreUsageErrors(_ value: String) async throws {
        let result = try await CommandRunner.tokend(["health", "--socket", socket, "--timeout", value])
        #expect(result.status == 64, "--timeout '\(value)': \(result.stderr)")
    }

    @Test func healthOnAPathThatIsNotASocketIsDown() async throws {
        _ = FileManager.default.createFile(atPath: socket, contents: Data("not a socket".utf8))
        let result = try await CommandRunner.tokend(["health", "--socket", socket])
        #expect(result.status == 14 && result.stdout.hasPrefix("down: "), "\(result.stdout)")
        let tooLong = try await CommandRunner.tokend(["health", "--socket", "/tmp/" + String(repeating: "x", count: 200)])
        #expect(tooLong.status == 14, "\(tooLong.stdout)")
    }

    /// A socket that answers each connection with fixed bytes (or, with
    /// none, keeps it open in silence): what the probe must not trust.
    func strangerAnswering(_ answer: [UInt8]) async throws {
        let payload = directory + "/payload"
        _ = FileManager.default.createFile(atPath: payload, contents: Data(answer))
        let script = """
            import socket, sys
            server = socket.socket(socket.AF_UNIX)
            server.bind(sys.argv[1])
            server.listen(8)
            data = open(sys.argv[2], "rb").read()
            held = []
            while True:
                connection, _ = server.accept()
                connection.recv(4096)
                if data:
                    connection.sendall(data)
                    connection.close()
                else:
                    held.append(connection)
            """
        try? FileManager.default.removeItem(atPath: socket)
        children.append(try ChildProcess("/usr/bin/env", ["python3", "-c", script, socket, payload], output: directory + "/stranger.log"))
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) })
    }

    static let strangeAnswers: [(String, Int32)] = [
        ("", 14),  // accepts, never answers: the deadline ends it
        ("HELLO there\n", 14),
        ("OK\n", 14),
        ("OK identities=abc fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0\n", 14),
        ("OK identities=-1 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0\n", 14),
        ("OK identities=1 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0 servable=\u{1}\n", 14),
        ("OK identities=99999999999999999999999 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0\n", 14),
        ("OK identities=1 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0", 14),  // no newline, then closed
        ("OK identities=1 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0 servable=1 failing=x\n", 14),
        ("OK identities=1 fresh=1 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0 servable=1 failing=1\n", 18),
        ("ERR shutting_down the agent is stopping\n", 14),
        ("ERR forbidden STATS is an admin verb\n", 11),
        ("ERR busy too many connections\n", 18),
        ("OK identities=2 fresh=2 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0 servable=1\n", 17),
        ("OK identities=2 fresh=2 stale=0 expired=0 reauth_required=0 pending=0 corrupt=0\n", 0),  // an agent before servable=
    ]

    @Test(arguments: 0..<HealthAndWaitTests.strangeAnswers.count)
    func healthTrustsOnlyAWellFormedStatsReply(_ index: Int) async throws {
        let (answer, expected) = Self.strangeAnswers[index]
        try await strangerAnswering(Array(answer.utf8))
        let result = try await CommandRunner.tokend(["health", "--socket", socket, "--timeout", "10"])
        #expect(result.status == expected, "answer \(answer.debugDescription): \(result.stdout)")
    }

    @Test func getWaitRetriesOnlyWhatWaitingCanChange() async throws {
        try await strangerAnswering(Array("ERR unavailable no token yet retry_after=abc\n".utf8))
        let unavailable = try await CommandRunner.tokend(["get", "billing", "--socket", socket, "--wait", "5"])
        #expect(unavailable.status == 12, "\(unavailable.stderr)")
        #expect(unavailable.stderr.contains("gave up after 5.0 s: unavailable"), "\(unavailable.stderr)")
        children.removeLast().signal(SIGKILL)

        try await strangerAnswering(Array("garbage\u{0}\u{1b}[2J\n".utf8))
        let garbage = try await CommandRunner.tokend(["get", "billing", "--socket", socket, "--wait", "60"])
        #expect(garbage.status == 16, "\(garbage.stderr)")
        #expect(!garbage.stderr.contains("gave up"), "a reply that is not the protocol is not retried")
        children.removeLast().signal(SIGKILL)

        try await strangerAnswering([])
        let silent = try await CommandRunner.tokend(["get", "billing", "--socket", socket, "--wait", "0.5"])
        #expect(silent.status == 12, "\(silent.stderr)")
        #expect(silent.stderr.contains("gave up after 0.5 s"), "\(silent.stderr)")
    }

    @Test func createVaultNeedsTheKeyAndNeverMakesOneUp() async throws {
        _ = try await startProvider()
        try FileManager.default.removeItem(atPath: directory + "/vault.key")
        let result = try await CommandRunner.tokend(["serve", "--config", config, "--create-vault"])
        #expect(result.status == 5, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/vault.key"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/vault.db"))
    }

    @Test func healthRefusesAHugeReply() async throws {
        try await strangerAnswering([UInt8](repeating: UInt8(ascii: "A"), count: 3 << 20))
        let result = try await CommandRunner.tokend(["health", "--socket", socket, "--timeout", "10"])
        #expect(result.status == 14, "\(result.stdout)")
        #expect(result.stdout.contains("longer than 1 MiB") || result.stdout.contains("closed"), "\(result.stdout)")
    }
}

/// Polls `value` until it is non-nil or `timeout` passes.
func eventuallyValue<T: Sendable>(timeout: Duration = .seconds(30), _ value: @Sendable () async -> T?) async -> T? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let found = await value() { return found }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await value()
}
