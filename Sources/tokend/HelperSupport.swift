import ArgumentParser
import Foundation
import TokendConfig
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `--config` and `--socket` for the credential helpers and the long-running
/// client commands (`exec`, `token-file`).
///
/// They read only the socket path and the `[hosts]` table, never the
/// agent's secret files: whoever runs a helper needs the agent's socket
/// and its access rules, not the agent's privileges.
struct HelperOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp("Configuration file (default: $TOKEND_CONFIG, else \(TokendConfiguration.defaultPath)).", valueName: "file"))
    var configPath: String?

    @Option(
        name: .customLong("socket"),
        help: ArgumentHelp("The agent's socket (default: from the config, else /run/tokend/tokend.sock).", valueName: "path"))
    var socketPath: String?

    func clientConfiguration() throws(HelperFailure) -> ClientConfiguration {
        let explicit = configPath != nil || ProcessInfo.processInfo.environment[TokendConfiguration.pathEnvironmentVariable] != nil
        do {
            var configuration = try ConfigLoader.loadClient(path: ConfigLoader.resolvePath(configPath), explicit: explicit)
            if let socketPath { configuration.socketPath = socketPath }
            return configuration
        } catch {
            throw HelperFailure(error.problems.map(\.description).joined(separator: "; "), code: CLIExitCode.configuration)
        }
    }

    /// The socket path, reading the configuration only when `--socket` is not given.
    func resolvedSocket() throws(HelperFailure) -> String {
        if let socketPath { return socketPath }
        return try clientConfiguration().socketPath
    }
}

/// Why a helper could not answer: a message for stderr (never a token) and an exit code.
struct HelperFailure: Error {
    var message: String
    var code: Int32

    init(_ message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    /// `tokend: error: ...` on stderr, then exits with the code.
    func exit() -> Never {
        CLIExitCode.fail(message, code: code)
    }
}

/// One access token as `GET` answers it.
struct AgentToken: Equatable {
    var value: String
    var expiresIn: Int
    var tokenType: String

    var expiry: Date { Date(timeIntervalSinceNow: TimeInterval(expiresIn)) }

    /// Parses `OK <token> <expires_in> <token_type> [k=v...]`; an `ERR` line
    /// becomes a failure with the protocol code's exit code.
    static func parse(_ line: String) throws(HelperFailure) -> AgentToken {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if fields.first == "OK", fields.count >= 4, let expiresIn = Int(fields[2]) {
            return AgentToken(value: fields[1], expiresIn: max(0, expiresIn), tokenType: fields[3])
        }
        if fields.first == "ERR", fields.count >= 2 {
            let message = fields.dropFirst(2).joined(separator: " ")
            throw HelperFailure("\(fields[1]): \(message)", code: CLIExitCode.for(protocolCode: fields[1]))
        }
        throw HelperFailure("unexpected reply from the agent", code: CLIExitCode.protocolError)
    }

    /// Asks the agent at `socket` for `identity`'s token with one `GET`.
    static func fetch(_ identity: IdentityName, socket: String) throws(HelperFailure) -> AgentToken {
        let client: SocketClient
        do {
            client = try SocketClient(path: socket)
        } catch {
            if case .cannotConnect(let message) = error { throw HelperFailure(message, code: CLIExitCode.cannotConnect) }
            throw HelperFailure("cannot connect to \(socket)", code: CLIExitCode.cannotConnect)
        }
        let reply: String
        do {
            reply = try client.request("GET \(identity)")
        } catch {
            throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
        }
        return try parse(reply)
    }
}

/// Reading what a calling tool writes on standard input, with a bound: a
/// helper never buffers more than a credential request can be.
enum HelperInput {
    static let limit = 65_536

    /// All of standard input, or a failure if it is larger than `limit`
    /// or not UTF-8.
    static func readAll(limit: Int = limit) throws(HelperFailure) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            if bytes.count > limit { throw HelperFailure("standard input is larger than \(limit) bytes", code: CLIExitCode.configuration) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw HelperFailure("standard input is not UTF-8", code: CLIExitCode.configuration)
        }
        return text
    }

    /// A JSON object from standard input.
    static func jsonObject() throws(HelperFailure) -> [String: Any] {
        let text = try readAll()
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw HelperFailure("standard input is not a JSON object", code: CLIExitCode.configuration)
        }
        return object
    }
}

enum HelperOutput {
    /// RFC 3339 in UTC, whole seconds: what kubectl and Bazel parse.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// Writes `object` as one line of JSON to standard output.
    static func json(_ object: Any) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    static func write(_ text: String) {
        var remaining = Array(text.utf8)[...]
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            remaining = remaining.dropFirst(written)
        }
    }
}

extension IdentityName {
    /// An identity named on the command line, or a usage error.
    static func argument(_ text: String) throws -> IdentityName {
        guard let name = IdentityName(text) else {
            throw ValidationError("\(text.debugDescription) is not a valid identity name ([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})")
        }
        return name
    }
}
