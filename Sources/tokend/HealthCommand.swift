import ArgumentParser
import Foundation
import TokendCore
import TokendProtocol
import TokendConfig

#if canImport(Glibc)
import Glibc
#endif

/// `tokend health`: one `STATS` request with a deadline, judged as one of
/// four states, for container probes (one connection, one line each way).
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health", abstract: "Check the agent for a probe: ready, starting, degraded or down.",
        discussion: """
            Exit codes: 0 ready (every identity has a valid token and none is failing), \
            17 starting (the agent answers, some identity has no valid token yet, none is failing), \
            18 degraded (some identity's refresh is failing, or it is reauth_required or corrupt, or the agent is busy), \
            14 down (no agent on the socket, no answer within --timeout, or shutting down), \
            11 the caller is not an admin (STATS is an admin verb: run it as the agent's user). \
            With --live, starting and degraded exit 0 too: only down fails.
            """)

    @OptionGroup var socket: SocketOption
    @Option(help: ArgumentHelp("Seconds to wait for the agent's answer (0.1 to 300).", valueName: "seconds"))
    var timeout: Double = 3
    @Flag(help: "For a liveness probe: exit 0 whenever the agent answers; only down fails.") var live = false

    func validate() throws {
        guard timeout.isFinite, (0.1...300).contains(timeout) else {
            throw ValidationError("--timeout must be between 0.1 and 300 seconds")
        }
    }

    func run() async throws {
        let path = try socket.resolvedPath()
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        let health = AgentHealth.probe(path: path, until: deadline)
        print(health.line)
        if case .notAdmin = health { throw ExitCode(CLIExitCode.forbidden) }
        if !(live && health.isAnswering) { throw ExitCode(health.exitCode) }
    }
}

/// The agent's health as a probe sees it.
enum AgentHealth: Equatable {
    case ready(identities: Int)
    case starting(withoutToken: Int, identities: Int)
    case degraded(String)
    case down(String)
    case notAdmin(String)

    static let startingExitCode: Int32 = 17
    static let degradedExitCode: Int32 = 18

    var exitCode: Int32 {
        switch self {
        case .ready: CLIExitCode.ok
        case .starting: Self.startingExitCode
        case .degraded: Self.degradedExitCode
        case .down: CLIExitCode.cannotConnect
        case .notAdmin: CLIExitCode.forbidden
        }
    }

    var isAnswering: Bool {
        switch self {
        case .ready, .starting, .degraded: true
        case .down, .notAdmin: false
        }
    }

    var line: String {
        switch self {
        case .ready(let count): "ready: \(count) \(count == 1 ? "identity" : "identities") with valid tokens"
        case .starting(let waiting, let count): "starting: \(waiting) of \(count) identities have no token yet"
        case .degraded(let why): "degraded: \(why)"
        case .down(let why): "down: \(why)"
        case .notAdmin(let why): "unknown: \(why)"
        }
    }

    static func probe(path: String, until deadline: ContinuousClock.Instant) -> AgentHealth {
        switch SocketClient.request("STATS", path: path, until: deadline) {
        case .failure(.cannotConnect(let why)): return .down(why)
        case .failure(.timedOut): return .down("no answer from the agent on \(path) in time")
        case .failure(.broken(let why)): return .down(why)
        case .success(let reply): return judge(reply)
        }
    }

    /// Judges a `STATS` reply line. Anything that is not a well-formed
    /// reply counts as down: a probe must not call a stranger healthy.
    static func judge(_ reply: String) -> AgentHealth {
        let fields = reply.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        if fields.first == "ERR", fields.count >= 2 {
            switch fields[1] {
            case "forbidden":
                return .notAdmin("STATS is an admin verb; run the check as the agent's user or root, or list this uid in [admins]")
            case "busy": return .degraded("the agent is at max_connections, or this uid at max_connections_per_uid")
            case "shutting_down": return .down("the agent is shutting down")
            default: return .down("the agent answered ERR \(fields[1].prefix(32))")
            }
        }
        guard fields.first == "OK" else { return .down("the answer is not a tokend reply") }
        let values = ReceivedReply.options(fields.dropFirst())
        func count(_ key: String) -> Int? { values[key].flatMap { Int($0) }.flatMap { $0 >= 0 ? $0 : nil } }
        let keys = ["identities", "fresh", "stale", "expired", "reauth_required", "pending", "corrupt"]
        var counts: [String: Int] = [:]
        for key in keys {
            guard let value = count(key) else { return .down("the STATS reply has no valid \(key)= count") }
            counts[key] = value
        }
        let identities = counts["identities"]!
        // Optional (agents before them lack them), but never malformed.
        for key in ["servable", "failing"] where values[key] != nil && count(key) == nil {
            return .down("the STATS reply has no valid \(key)= count")
        }
        let states = ["stale", "expired", "reauth_required", "corrupt"].filter { counts[$0]! > 0 }.map { "\(counts[$0]!) \($0)" }
        // With `failing=`, a retry in flight (counted as fresh) is seen, and
        // a token that merely expired while the agent was stopped (expired,
        // no failure) is "starting" until its refresh, not "degraded".
        if let retrying = count("failing") {
            if retrying + counts["reauth_required"]! + counts["corrupt"]! > 0 {
                return .degraded(states.isEmpty ? "\(retrying) failing" : states.joined(separator: ", "))
            }
        } else if !states.isEmpty {
            return .degraded(states.joined(separator: ", "))
        }
        // Agents before `servable=` counted a first refresh in flight as
        // fresh; then fresh is the best available answer.
        let servable = count("servable") ?? counts["fresh"]!
        if servable < identities { return .starting(withoutToken: identities - servable, identities: identities) }
        return .ready(identities: identities)
    }
}

extension SocketOption {
    /// The socket path `connect()` would use: `--socket`, else the
    /// configuration's, else the default.
    func resolvedPath() throws -> String {
        try path ?? config.loadIfPresent()?.socket.path ?? SocketSettings.defaultPath
    }
}
