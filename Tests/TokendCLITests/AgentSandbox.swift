import Foundation
import Synchronization
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// An OAuth2 token endpoint (RFC 6749 §5) on loopback HTTP whose answer
/// depends on the refresh token presented, so one running agent can hold
/// identities in every condition at once:
///
/// - `rt-down...`: `503` with `Retry-After: 120` (`temporarily_unavailable`);
/// - `rt-dead...`: `400 invalid_grant`;
/// - `rt-slow...`: no answer until ``release()`` (a refresh slower than
///   `refresh_wait`);
/// - anything else, and `client_credentials`: a new one-hour token.
final class ScriptedTokenEndpoint: Sendable {
    struct State {
        var requests: [String: Int] = [:]
        var answered: [String: Int] = [:]
        var released = false
        var issued = 0
    }

    /// Shared by the endpoint and its server's handler, which exists first.
    final class Box: Sendable { let state = Mutex(State()) }

    private let box: Box
    private let server: LoopbackHTTPServer
    var url: String { server.baseURL + "/token" }

    private init(box: Box, server: LoopbackHTTPServer) {
        self.box = box
        self.server = server
    }

    static func start() async throws -> ScriptedTokenEndpoint {
        let box = Box()
        let server = try await LoopbackHTTPServer.start { request in await Self.answer(request, box) }
        return ScriptedTokenEndpoint(box: box, server: server)
    }

    private static func answer(_ request: LoopbackHTTPRequest, _ box: Box) async -> LoopbackHTTPAction {
        let form = request.form
        let key = form["grant_type"] == "client_credentials" ? "client_credentials" : (form["refresh_token"] ?? "-")
        box.state.withLock { $0.requests[key, default: 0] += 1 }
        if key.hasPrefix("rt-slow") {
            // Held until the test releases it (bounded, so a forgotten
            // release cannot hang the server's shutdown forever).
            let deadline = ContinuousClock.now + .seconds(60)
            while !box.state.withLock({ $0.released }) && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { box.state.withLock { $0.answered[key, default: 0] += 1 } }
        if key.hasPrefix("rt-down") {
            return .json(503, ["error": "temporarily_unavailable"], headers: [("Retry-After", "120")])
        }
        if key.hasPrefix("rt-dead") {
            return .json(400, ["error": "invalid_grant", "error_description": "refresh token revoked"])
        }
        let serial = box.state.withLock { state -> Int in
            state.issued += 1
            return state.issued
        }
        return .json(200, ["access_token": "at-\(key)-\(serial)", "token_type": "Bearer", "expires_in": 3600])
    }

    /// Requests received for a refresh token (or `client_credentials`).
    func requests(_ key: String) -> Int { box.state.withLock { $0.requests[key] ?? 0 } }
    /// Answers sent for it.
    func answered(_ key: String) -> Int { box.state.withLock { $0.answered[key] ?? 0 } }
    var totalRequests: Int { box.state.withLock { $0.requests.values.reduce(0, +) } }

    /// Lets every held `rt-slow` request be answered.
    func release() { box.state.withLock { $0.released = true } }

    func shutdown() async {
        release()
        await server.shutdown()
    }
}

/// A directory with a configuration, a vault and (once started) the real
/// `tokend serve`, for tests that hold the agent to what the docs promise.
final class AgentSandbox: Sendable {
    let directory: String
    var config: String { directory + "/tokend.toml" }
    var socket: String { directory + "/tokend.sock" }
    var secretFile: String { directory + "/client.secret" }

    init(_ label: String) throws {
        directory = "/tmp/tokend-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        FileManager.default.createFile(
            atPath: secretFile, contents: Data("\(FakeTransmitServer.clientSecret)\n".utf8), attributes: [.posixPermissions: 0o600])
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// `[providers.oauth]`, an OAuth2 provider at `endpoint`.
    func oauthProvider(_ endpoint: ScriptedTokenEndpoint) -> String {
        """
        [providers.oauth]
        kind = "oauth2"
        token_endpoint = "\(endpoint.url)"
        allow_insecure_http = true
        client_id = "tokend-test"
        client_secret_file = "\(secretFile)"
        """
    }

    /// `[providers.transmit]`, the fake Transmit server.
    func transmitProvider(_ fake: FakeTransmitServer) -> String {
        """
        [providers.transmit]
        kind = "transmit"
        base_url = "\(fake.baseURL)"
        allow_insecure_http = true
        client_id = "\(FakeTransmitServer.clientID)"
        client_secret_file = "\(secretFile)"
        """
    }

    /// Writes the configuration: the vault and socket in this directory,
    /// then `socketExtra` in `[socket]`, then `rest`.
    func writeConfig(socketExtra: String = "", _ rest: String) {
        let header = CommandRunner.configHeader(directory: directory, socket: socket, socketExtra: socketExtra)
        FileManager.default.createFile(atPath: config, contents: Data((header + "\n" + rest + "\n").utf8))
    }

    func initVault() async throws {
        let result = try await CommandRunner.tokend(["vault", "init", "--config", config])
        guard result.status == 0 else { throw SandboxFailure("vault init exited \(result.status): \(result.stderr)") }
    }

    /// `vault import` of JSON lines (secrets on stdin, as the docs say).
    func importLines(_ lines: [String]) async throws -> CommandRunner.Result {
        try await CommandRunner.tokend(
            ["vault", "import", "--config", config], stdin: Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    /// Starts `tokend serve` and waits until its socket answers `PING`.
    func startAgent(log: String = "agent.log", configPath: String? = nil) async throws -> ChildProcess {
        let agent = try ChildProcess(
            CommandRunner.tokendPath, ["serve", "--config", configPath ?? config], output: directory + "/" + log)
        let path = socket
        let up = await eventually(timeout: .seconds(30)) {
            (try? await blocking { try TestClient(path: path, receiveTimeout: 2).request("PING") }) == "OK PONG"
        }
        guard up else {
            await agent.kill()
            throw SandboxFailure("the agent did not answer PING: \(agent.output)")
        }
        return agent
    }

    /// One request on a new connection; the reply line, or nil if the agent
    /// closed without one.
    func ask(_ line: String, timeout: Double = 30) async throws -> String? {
        let path = socket
        return try await blocking { try TestClient(path: path, receiveTimeout: timeout).request(line) }
    }

    /// Stops the agent with SIGTERM and returns its exit status.
    func stop(_ agent: ChildProcess) async -> Int32? {
        agent.signal(SIGTERM)
        let status = await agent.wait(timeout: .seconds(30))
        if status == nil { await agent.kill() }
        return status
    }
}

struct SandboxFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `{"name": ..., "provider": ..., ...}` for `vault import`.
func importLine(_ fields: [String: Any]) -> String {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

/// Lines collected from inside a `@Sendable` closure.
final class Transcript: Sendable {
    private let store = Mutex<[String]>([])
    func append(_ line: String) { store.withLock { $0.append(line) } }
    var lines: [String] { store.withLock { $0 } }
}
