import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// A real `tokend serve` with one identity (`billing-worker`) at the fake
/// Transmit server, for the tests of the tools that sit on the socket:
/// credential helpers, `exec` and `token-file`. `rotate()` forces a
/// refresh, so a test makes each new token itself instead of waiting.
final class ToolsAgent: Sendable {
    static let identity = "billing-worker"

    let directory: String
    let fake: FakeTransmitServer
    let agent: ChildProcess
    var configPath: String { directory + "/tokend.toml" }
    var socketPath: String { directory + "/tokend.sock" }

    /// The repository's `scripts/tools-test` folder (the fake servers and child programs).
    static var scripts: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/tools-test").path
    }

    /// - Parameters:
    ///   - extra: TOML appended to the configuration (`[hosts...]`).
    ///   - socket: more keys for the `[socket]` section.
    ///   - allow: allow rules of `billing-worker`.
    ///   - more: other identities to enroll, with their allow rules.
    init(extra: String = "", socket: String = "", allow: [String] = [], more: [String: [String]] = [:]) async throws {
        directory = "/tmp/tokend-tools-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: directory + "/transmit.secret", contents: Data(FakeTransmitServer.clientSecret.utf8),
            attributes: [.posixPermissions: 0o600])
        fake = try await FakeTransmitServer.start()
        let text = CommandRunner.configHeader(directory: directory, socket: directory + "/tokend.sock", socketExtra: socket)
            + "\n" + CommandRunner.transmitProvider(fake, directory: directory) + "\n" + extra + "\n"
        _ = FileManager.default.createFile(atPath: directory + "/tokend.toml", contents: Data(text.utf8))
        let configPath = directory + "/tokend.toml"
        let initialized = try await CommandRunner.tokend(["vault", "init", "--config", configPath])
        guard initialized.status == 0 else { throw Failure("vault init: \(initialized.stderr)") }
        var lines = ""
        for (name, rules) in [(Self.identity, allow)] + more.sorted(by: { $0.key < $1.key }) {
            let (refreshToken, sessionID) = fake.mintSession(userID: "user-\(name)")
            let object: [String: Any] = [
                "name": name, "provider": "transmit", "refresh_token": refreshToken, "session_id": sessionID, "allow": rules,
            ]
            lines += String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) + "\n"
        }
        let imported = try await CommandRunner.tokend(["vault", "import", "--config", configPath], stdin: Data(lines.utf8))
        guard imported.status == 0 else { throw Failure("vault import: \(imported.stderr)") }
        agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", configPath], output: directory + "/agent.log")
        let socket = directory + "/tokend.sock"
        guard await eventually(timeout: .seconds(30), { FileManager.default.fileExists(atPath: socket) }) else {
            throw Failure("the agent did not start: \(agent.output)")
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// The identity's current token, as an admin `tokend get` sees it.
    func token() async throws -> String {
        let result = try await CommandRunner.tokend(["get", Self.identity, "--socket", socketPath])
        guard result.status == 0 else { throw Failure("get: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Forces a refresh and returns the new token.
    func rotate() async throws -> String {
        let before = try await token()
        let result = try await CommandRunner.tokend(["refresh", Self.identity, "--socket", socketPath])
        guard result.status == 0 else { throw Failure("refresh: \(result.stderr)") }
        let after = try await token()
        guard after != before else { throw Failure("the refresh did not change the token") }
        return after
    }

    /// Stops the agent and the fake, removes the files.
    func stop() async {
        await agent.kill()
        await fake.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Lines of a log file the child programs append to.
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Runs `/bin/sh -c script` (the tests' own fixed scripts, no token in them).
    static func shell(_ script: String) async throws -> CommandRunner.Result {
        try await CommandRunner.run("/bin/sh", ["-c", script])
    }

    /// Starts a python script from `scripts/tools-test` and waits for the
    /// port it writes.
    static func startServer(_ script: String, _ arguments: [String], in directory: String) async throws -> (ChildProcess, Int) {
        let portFile = directory + "/\(script).port"
        let server = try ChildProcess(
            "/usr/bin/env", ["python3", scripts + "/" + script] + arguments + ["--port-file", portFile],
            output: directory + "/\(script).log")
        guard await eventually(timeout: .seconds(30), { FileManager.default.fileExists(atPath: portFile) }),
            let port = Int((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "")
        else {
            await server.kill()
            throw Failure("\(script) did not start: \(server.output)")
        }
        return (server, port)
    }
}
