import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// The loop behind `tokend token-file`: rewrite the file on every new token
/// at once, run the hook once the tokens have been quiet for `debounce`.
final class TokenFileKeeper {
    private let watcher: TokenWatcher
    private let file: PrivateTokenFile
    private let hook: RotationHook
    private let debounce: Duration
    private let signals: SignalPipe

    private var written: String
    private var hookDue: ContinuousClock.Instant?
    private var running: (pid: pid_t, deadline: ContinuousClock.Instant, killed: Bool)?
    private var reconnectAt: ContinuousClock.Instant?

    init(watcher: TokenWatcher, file: PrivateTokenFile, hook: RotationHook, debounce: Duration) throws(HelperFailure) {
        self.watcher = watcher
        self.file = file
        self.hook = hook
        self.debounce = debounce
        signals = try SignalPipe(catching: [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD])
        let first = try watcher.first()
        try file.write(first.value)
        written = first.value
    }

    /// Runs until SIGTERM, SIGINT or SIGQUIT; the file stays.
    func run() -> Int32 {
        while true {
            var deadlines = [reconnectAt].compactMap { $0 }
            if let running, !running.killed { deadlines.append(running.deadline) }
            if running == nil, let hookDue { deadlines.append(hookDue) }
            let descriptors = [signals.readEnd] + (watcher.isConnected ? [watcher.descriptor] : [])
            let readable = pollReadable(descriptors, until: deadlines.min())
            if readable.contains(signals.readEnd) {
                let received = signals.drain()
                reapHook()
                if received.contains(where: { [SIGTERM, SIGINT, SIGQUIT].contains($0) }) {
                    if let running { kill(running.pid, SIGTERM) }
                    watcher.disconnect()
                    return 0
                }
            }
            if watcher.isConnected, readable.contains(watcher.descriptor) {
                for event in watcher.readAvailable() { handle(event) }
            }
            let now = ContinuousClock.now
            if let due = reconnectAt, due <= now {
                do throws(HelperFailure) {
                    try watcher.connect()
                    reconnectAt = nil
                } catch {
                    reconnectAt = now + .seconds(1)
                }
            }
            if let current = running, !current.killed, current.deadline <= now {
                CLIExitCode.printError("tokend: warning: the rotation hook ran longer than its timeout; killed")
                kill(current.pid, SIGKILL)
                running?.killed = true
            }
            if running == nil, let due = hookDue, due <= now {
                hookDue = nil
                runHook()
            }
        }
    }

    private func handle(_ event: TokenWatcher.Event) {
        switch event {
        case .token(let token):
            reconnectAt = nil
            guard token.value != written else { return }
            do throws(HelperFailure) {
                try file.write(token.value)
                written = token.value
                hookDue = ContinuousClock.now + debounce
            } catch {
                CLIExitCode.printError("tokend: error: \(error.message)")
            }
        case .failure(let failure):
            CLIExitCode.printError("tokend: warning: \(failure.message); the file keeps the current token")
        case .closed:
            CLIExitCode.printError("tokend: warning: the agent closed the connection; reconnecting")
            reconnectAt = ContinuousClock.now + .seconds(1)
        }
    }

    private func runHook() {
        do throws(HelperFailure) {
            try hook.signalPidFile()
        } catch {
            CLIExitCode.printError("tokend: warning: rotation hook: \(error.message)")
        }
        do throws(HelperFailure) {
            if let pid = try hook.startCommand(token: written) {
                running = (pid, ContinuousClock.now + hook.timeout, false)
            }
        } catch {
            CLIExitCode.printError("tokend: warning: rotation hook: \(error.message)")
        }
    }

    private func reapHook() {
        guard let current = running, let status = Spawn.reap(current.pid) else { return }
        running = nil
        if status != 0 { CLIExitCode.printError("tokend: warning: the rotation hook exited with status \(status)") }
    }
}
