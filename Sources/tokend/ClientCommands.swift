import ArgumentParser
import Foundation
import TokendConfig
import TokendCore
import TokendProtocol

/// `--socket`, defaulting to the configuration's socket path.
struct SocketOption: ParsableArguments {
    @OptionGroup var config: ConfigOption

    @Option(
        name: .customLong("socket"),
        help: ArgumentHelp("The agent's socket (default: from the config, else /run/tokend/tokend.sock).", valueName: "path"))
    var path: String?

    func connect() throws -> SocketClient {
        let resolved = try path ?? config.loadIfPresent()?.socket.path ?? SocketSettings.defaultPath
        do {
            return try SocketClient(path: resolved)
        } catch {
            if case .cannotConnect(let message) = error { throw HelperFailure(message, code: CLIExitCode.cannotConnect) }
            throw HelperFailure("cannot connect to \(resolved)", code: CLIExitCode.cannotConnect)
        }
    }

    /// One request, one reply; `ERR` replies end the command with their exit code.
    func ask(_ line: String) throws -> [String] {
        let client = try connect()
        let reply: String
        do {
            reply = try client.request(line)
        } catch {
            throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
        }
        return try ReplyLine.ok(reply)
    }
}

/// Reading reply lines.
enum ReplyLine {
    /// The fields after `OK`; an `ERR` becomes a failure with the protocol
    /// code's exit code and the agent's message.
    static func ok(_ line: String) throws(HelperFailure) -> [String] {
        switch ReceivedReply(line: line) {
        case .ok(let fields)?: return fields
        case .error(let code, let detail)?: throw HelperFailure("\(code): \(detail)", code: CLIExitCode.for(protocolCode: code))
        case nil: throw HelperFailure("unexpected reply from the agent", code: CLIExitCode.protocolError)
        }
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Print an identity's current access token.",
        discussion: "--format header prints `Authorization: Bearer <token>` for `curl -H @-`.")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case token, json, header
    }

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity.") var identity: String
    @Option(name: .customLong("min-ttl"), help: "Refresh first if fewer seconds than this remain.") var minTTL: Int?
    @Option(help: "token, json or header.") var format: Format = .token
    @Option(help: ArgumentHelp(
        "Until the first token is served, retry for up to this many seconds (agent not up yet, unavailable).",
        valueName: "seconds"))
    var wait: WaitSeconds?

    func run() async throws {
        var line = "GET \(identity)"
        if let minTTL { line += " min_ttl=\(minTTL)" }
        let fields = try wait.map { try TokenWait.fields(line, path: socket.resolvedPath(), wait: $0) } ?? socket.ask(line)
        guard fields.count >= 3 else { throw HelperFailure("short reply from the agent", code: CLIExitCode.protocolError) }
        let stale = ReceivedReply.options(fields.dropFirst(3))["stale"] == "1"
        switch format {
        case .token: print(fields[0])
        case .header: print("Authorization: \(fields[2]) \(fields[0])")
        case .json:
            let object: [String: Any] = [
                "access_token": fields[0], "expires_in": Int(fields[1]) ?? 0, "token_type": fields[2], "stale": stale,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show one identity's state, or a summary of the agent without an identity.")

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity (omit for the agent's summary; needs admin).") var identity: String?

    func run() async throws {
        guard let identity else {
            let stats = ReceivedReply.options(try socket.ask("STATS"))
            let keys = ["fresh", "stale", "expired", "reauth_required", "pending", "corrupt"]
            let parts = keys.compactMap { key in stats[key].flatMap { $0 == "0" ? nil : "\($0) \(key)" } }
            print("\(stats["identities"] ?? "0") identities: \(parts.isEmpty ? "none" : parts.joined(separator: ", "))")
            print("refreshes: \(stats["refreshes"] ?? "0"), failures: \(stats["failures"] ?? "0"), connections: \(stats["connections"] ?? "0")")
            return
        }
        for field in try socket.ask("STATUS \(identity)") {
            guard let equals = field.firstIndex(of: "=") else { continue }
            print("\(field[..<equals]): \(field[field.index(after: equals)...])")
        }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the identities you may read.")

    @OptionGroup var socket: SocketOption
    @Option(help: "Only names starting with this prefix.") var prefix: String?

    func run() async throws {
        var after: String? = nil
        repeat {
            var line = "LIST limit=1000"
            if let prefix { line += " prefix=\(prefix)" }
            if let after { line += " after=\(after)" }
            let fields = try socket.ask(line)
            let count = Int(fields.first ?? "0") ?? 0
            for name in fields.dropFirst().prefix(count) { print(name) }
            after = ReceivedReply.options(fields.dropFirst(count + 1))["next"]
        } while after != nil
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Print an identity's token now and again every time it changes.")

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity.") var identity: String

    func run() async throws {
        let client = try socket.connect()
        do {
            try client.send("WATCH \(identity)")
            while true {
                let line = try client.readLine()
                let fields = try ReplyLine.ok(line)
                // Line by line, even into a pipe: a watcher acts on each change.
                FileHandle.standardOutput.write(Data((fields.joined(separator: " ") + "\n").utf8))
            }
        } catch is SocketClient.Failure {
            throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
        }
    }
}

struct RefreshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh", abstract: "Force a refresh now and print the new token's lifetime (admin).")

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity.") var identity: String

    func run() async throws {
        let fields = try socket.ask("REFRESH \(identity)")
        let stale = ReceivedReply.options(fields.dropFirst(3))["stale"] == "1"
        print("refreshed \(identity): expires in \(fields.count > 1 ? fields[1] : "?") s\(stale ? " (stale: the refresh failed, old token still valid)" : "")")
    }
}

struct RemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an identity and its secrets (admin).")

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity.") var identity: String
    @Flag(help: "End the provider session first (Transmit logout); refused while other identities share it.")
    var logout = false
    @Flag(
        name: .customLong("logout-all"),
        help: "End the session even if other identities share it: they all need re-enrollment then.")
    var logoutAll = false

    func validate() throws {
        if logout && logoutAll { throw ValidationError("Give --logout or --logout-all, not both.") }
    }

    func run() async throws {
        _ = try socket.ask("REMOVE \(identity)\(logoutAll ? " logout=all" : logout ? " logout=1" : "")")
        print("removed \(identity)")
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Print the agent's counters (admin).")

    @OptionGroup var socket: SocketOption

    func run() async throws {
        print(try socket.ask("STATS").joined(separator: " "))
    }
}

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Make the agent re-read its configuration (admin).")

    @OptionGroup var socket: SocketOption

    func run() async throws {
        print(try socket.ask("RELOAD").joined(separator: " "))
    }
}

struct EnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll", abstract: "Enroll an identity with the running agent (admin).",
        discussion: """
            Secrets are read from a file or standard input, never from arguments. With both \
            --refresh-token-stdin and --session-id-stdin, standard input holds the refresh token on the \
            first line and the session id on the second.
            """)

    @OptionGroup var socket: SocketOption
    @Argument(help: "The identity.") var identity: String
    @Option(help: "The provider (from the configuration).") var provider: String
    @Option(help: "refresh_token, client_credentials or session (default: from what is given).") var grant: GrantKind?
    @Option(name: .customLong("refresh-token-file"), help: "Read the refresh token from this file.") var refreshTokenFile: String?
    @Flag(name: .customLong("refresh-token-stdin"), help: "Read the refresh token from standard input.") var refreshTokenStdin = false
    @Flag(name: .customLong("session-id-stdin"), help: "Read the Transmit session id from standard input.") var sessionIDStdin = false
    @Option(name: .customLong("allow"), help: "An allow rule (uid:N, user:NAME, gid:N, group:NAME, unit:NAME.service); repeatable.")
    var allow: [String] = []
    @Option(name: .customLong("refresh-at"), help: "Refresh at this fraction of the lifetime (0-1).") var refreshAt: Double?
    @Option(
        help: ArgumentHelp(
            "Join the session of this identity (SSO across apps: another app of the same Transmit tenant); "
                + "the session id never leaves the vault.", valueName: "identity"))
    var from: String?

    func validate() throws {
        if from != nil && (refreshTokenFile != nil || refreshTokenStdin || sessionIDStdin || (grant != nil && grant != .session)) {
            throw ValidationError("--from takes the session of another identity: give no refresh token, session id or other grant.")
        }
        if refreshTokenFile != nil && refreshTokenStdin {
            throw ValidationError("Give --refresh-token-file or --refresh-token-stdin, not both.")
        }
        if let wrong = allow.first(where: { AccessRule($0) == nil }) {
            throw ValidationError("\(wrong) is not uid:N, user:NAME, gid:N, group:NAME or unit:NAME.service")
        }
    }

    func run() async throws {
        var line = "ENROLL \(identity) provider=\(provider)"
        if let grant { line += " grant=\(grant.rawValue)" }
        if let refreshTokenFile {
            guard let text = try? String(contentsOfFile: refreshTokenFile, encoding: .utf8) else {
                throw HelperFailure("cannot read \(refreshTokenFile)", code: CLIExitCode.missingFile)
            }
            line += " refresh_token=\(try Self.secret(text, what: "refresh token"))"
        }
        if refreshTokenStdin { line += " refresh_token=\(try Self.secret(Swift.readLine() ?? "", what: "refresh token"))" }
        if sessionIDStdin { line += " session_id=\(try Self.secret(Swift.readLine() ?? "", what: "session id"))" }
        if !allow.isEmpty { line += " allow=\(allow.joined(separator: ","))" }
        if let refreshAt { line += " refresh_at=\(refreshAt)" }
        if let from { line += " from=\(from)" }
        let fields = try socket.ask(line)
        print("enrolled \(identity) (\(fields.dropFirst().joined(separator: " ")))")
    }

    /// A secret as the protocol carries it: one field, no spaces.
    static func secret(_ text: String, what: String) throws -> String {
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty, !value.contains(where: { $0 == " " || $0.isNewline }) else {
            throw HelperFailure("the \(what) is empty or contains spaces", code: CLIExitCode.configuration)
        }
        return value
    }
}

extension GrantKind: ExpressibleByArgument {}
