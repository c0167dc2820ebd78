import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What to do after a token file is rewritten: signal the process a pid
/// file names, and/or run a command (argv, no shell) that sees the token
/// only on standard input and only when asked.
struct RotationHook {
    var pidFile: String?
    var signal: Int32
    var command: [String]
    var tokenStdin: Bool
    var timeout: Duration

    /// Signals the process in `pidFile`. A pid file that is missing, huge,
    /// not a number, or names pid 0, 1 or a negative (a process group,
    /// or every process) is reported and nothing is signalled.
    func signalPidFile() throws(HelperFailure) {
        guard let pidFile else { return }
        let fd = open(pidFile, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw HelperFailure("cannot open pid file \(pidFile): \(String(cString: strerror(errno)))", code: CLIExitCode.missingFile) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 65)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0, count <= 64,
            let pid = Int32(String(decoding: bytes[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else {
            throw HelperFailure("pid file \(pidFile) does not hold a process id", code: CLIExitCode.missingFile)
        }
        guard kill(pid, signal) == 0 else {
            throw HelperFailure("cannot signal process \(pid) from \(pidFile): \(String(cString: strerror(errno)))", code: CLIExitCode.forbidden)
        }
    }

    /// Starts the command, if there is one; its environment is this
    /// process's, which never holds the token.
    func startCommand(token: String) throws(HelperFailure) -> pid_t? {
        guard !command.isEmpty else { return nil }
        guard tokenStdin else { return try Subprocess.spawn(command, environment: ProcessInfo.processInfo.environment) }
        var ends: [Int32] = [-1, -1]
        guard pipe2(&ends, O_CLOEXEC) == 0 else { throw HelperFailure("pipe: \(String(cString: strerror(errno)))", code: CLIExitCode.storage) }
        defer { close(ends[0]) }
        let pid: pid_t
        do {
            pid = try Subprocess.spawn(command, environment: ProcessInfo.processInfo.environment, stdinDescriptor: ends[0])
        } catch {
            close(ends[1])
            throw error
        }
        // One line, far below a pipe's buffer: this write does not block
        // even if the command never reads it.
        let line = Array((token + "\n").utf8)
        _ = line.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
        close(ends[1])
        return pid
    }
}

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
        guard let current = running, let status = Subprocess.reap(current.pid) else { return }
        running = nil
        if status != 0 { CLIExitCode.printError("tokend: warning: the rotation hook exited with status \(status)") }
    }
}
