import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// The loop behind `tokend exec`: one child, its token, rotations and
/// signals, all driven from one `poll` over the signal pipe and the
/// agent's `WATCH` connection.
final class ExecSupervisor {
    enum Delivery {
        case environment(String)
        case file(PrivateTokenFile)
    }

    /// What the child is doing, as far as the supervisor is concerned.
    enum ChildState {
        case running(pid_t)
        /// Stopped for a restart: SIGKILL at `deadline` unless it is gone.
        case stopping(pid_t, deadline: ContinuousClock.Instant, killed: Bool)
    }

    /// Forwarded to the child; the first four also mean "stop, do not restart".
    static let forwarded = [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH]
    static let ending: Set<Int32> = [SIGTERM, SIGINT, SIGQUIT]

    private let watcher: TokenWatcher
    private let delivery: Delivery
    private let command: [String]
    private let rotateSignal: Int32?
    private let stopSignal: Int32
    private let grace: Duration
    private let debounce: Duration
    private let signals: SignalPipe

    private var token: AgentToken
    private var pending: (token: AgentToken, due: ContinuousClock.Instant)?
    private var child: ChildState
    private var ending = false
    private var reconnectAt: ContinuousClock.Instant?

    init(
        watcher: TokenWatcher, delivery: Delivery, command: [String], rotateSignal: Int32?, stopSignal: Int32,
        grace: Duration, debounce: Duration
    ) throws(HelperFailure) {
        self.watcher = watcher
        self.delivery = delivery
        self.command = command
        self.rotateSignal = rotateSignal
        self.stopSignal = stopSignal
        self.grace = grace
        self.debounce = debounce
        signals = try SignalPipe(catching: Self.forwarded + [SIGCHLD])
        token = try watcher.first()
        if case .file(let file) = delivery { try file.write(token.value) }
        do {
            child = .running(try Self.start(command, delivery: delivery, token: token))
        } catch {
            if case .file(let file) = delivery { file.remove() }
            throw error
        }
    }

    private static func start(_ command: [String], delivery: Delivery, token: AgentToken) throws(HelperFailure) -> pid_t {
        var environment = ProcessInfo.processInfo.environment
        if case .environment(let name) = delivery { environment[name] = token.value }
        // closeOthers: false, so descriptors meant for the program (socket
        // activation) still reach it; tokend's own are close-on-exec.
        do { return try Spawn.start(command, environment: environment, closeOthers: false) } catch { throw HelperFailure(error) }
    }

    /// Runs until the child exits on its own (or after an ending signal);
    /// returns the exit code to leave with.
    func run() -> Int32 {
        while true {
            // A rotation waits while the child is stopping or ending; its
            // deadline would only make poll spin meanwhile.
            var deadlines = [reconnectAt, stoppingDeadline].compactMap { $0 }
            if let pending, case .running = child, !ending { deadlines.append(pending.due) }
            let descriptors = [signals.readEnd] + (watcher.isConnected ? [watcher.descriptor] : [])
            let readable = pollReadable(descriptors, until: deadlines.min())
            if readable.contains(signals.readEnd), let status = handleSignals(signals.drain()) {
                finish()
                return status
            }
            if watcher.isConnected, readable.contains(watcher.descriptor) {
                for event in watcher.readAvailable() { handle(event) }
            }
            let now = ContinuousClock.now
            if let due = reconnectAt, due <= now { reconnect() }
            if case .stopping(let pid, let deadline, false) = child, deadline <= now {
                kill(pid, SIGKILL)
                child = .stopping(pid, deadline: deadline, killed: true)
            }
            if let rotation = pending, rotation.due <= now, case .running(let pid) = child, !ending {
                pending = nil
                if let status = rotate(to: rotation.token, pid: pid) {
                    finish()
                    return status
                }
            }
        }
    }

    private var stoppingDeadline: ContinuousClock.Instant? {
        if case .stopping(_, let deadline, false) = child { return deadline }
        return nil
    }

    private var childPid: pid_t {
        switch child {
        case .running(let pid), .stopping(let pid, _, _): pid
        }
    }

    /// Forwards signals and reaps the child; returns an exit code once
    /// the supervisor should end.
    private func handleSignals(_ received: [Int32]) -> Int32? {
        for signo in received where signo != SIGCHLD {
            if Self.ending.contains(signo) { ending = true }
            kill(childPid, signo)
        }
        guard let status = Spawn.reap(childPid) else { return nil }
        guard case .stopping = child, !ending else { return status }
        // Stopped for a restart: start again with the newest token.
        do throws(HelperFailure) {
            child = .running(try Self.start(command, delivery: delivery, token: token))
            return nil
        } catch {
            CLIExitCode.printError("tokend: error: \(error.message)")
            return error.code
        }
    }

    private func handle(_ event: TokenWatcher.Event) {
        switch event {
        case .token(let next):
            reconnectAt = nil
            guard next.value != token.value, next.value != pending?.token.value else { return }
            pending = (next, ContinuousClock.now + debounce)
        case .failure(let failure):
            CLIExitCode.printError("tokend: warning: \(failure.message); the command keeps its current token")
        case .closed:
            CLIExitCode.printError("tokend: warning: the agent closed the connection; reconnecting")
            reconnectAt = ContinuousClock.now + .seconds(1)
        }
    }

    private func reconnect() {
        do throws(HelperFailure) {
            try watcher.connect()
            reconnectAt = nil
        } catch {
            reconnectAt = ContinuousClock.now + .seconds(1)
        }
    }

    /// Applies a new token: rewrites the file, then signals or stops the
    /// child (the restart happens when it has exited).
    private func rotate(to next: AgentToken, pid: pid_t) -> Int32? {
        token = next
        if case .file(let file) = delivery {
            do throws(HelperFailure) {
                try file.write(next.value)
            } catch {
                CLIExitCode.printError("tokend: error: \(error.message)")
                return nil
            }
        }
        if let rotateSignal {
            kill(pid, rotateSignal)
        } else {
            kill(pid, stopSignal)
            child = .stopping(pid, deadline: ContinuousClock.now + grace, killed: false)
        }
        return nil
    }

    private func finish() {
        watcher.disconnect()
        if case .file(let file) = delivery { file.remove() }
    }
}
