import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The write end of the self-pipe, for the signal handler (a C function
/// cannot capture). Set once, before any handler is installed.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// Turns signals into bytes on a pipe, so one `poll` loop waits for
/// signals, the agent's socket and deadlines together.
///
/// Why a handler and not a blocked mask with `signalfd`: the Swift runtime
/// has other threads by the time a command runs, and a signal left
/// unblocked on one of them would take its default action (terminate)
/// there. A handler catches it on whichever thread it lands.
final class SignalPipe {
    let readEnd: Int32

    init(catching signals: [Int32]) throws(HelperFailure) {
        let ends = try closeOnExecPipe()
        for end in ends { _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK) }
        readEnd = ends[0]
        signalPipeWriteEnd = ends[1]
        for signo in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signo in
                let saved = errno
                var byte = UInt8(truncatingIfNeeded: signo)
                _ = write(signalPipeWriteEnd, &byte, 1)
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signo, &action, nil)
        }
    }

    /// The signals that arrived since the last call, in order (a signal
    /// that arrives twice before it is handled may count once, as POSIX has it).
    func drain() -> [Int32] {
        var received: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return received }
            received += buffer[..<count].map { Int32($0) }
        }
    }
}

/// Signal names on the command line: `HUP`, `SIGHUP` or a number.
enum SignalName {
    static let names: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "TERM": SIGTERM, "USR1": SIGUSR1, "USR2": SIGUSR2,
        "WINCH": SIGWINCH, "KILL": SIGKILL, "CONT": SIGCONT, "ALRM": SIGALRM,
    ]

    static func parse(_ text: String) -> Int32? {
        let upper = text.uppercased()
        let bare = upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper
        if let number = Int32(bare), (1...31).contains(number), number != SIGSTOP { return number }
        return names[bare]
    }
}

/// Waits for `descriptors` to become readable, or until `deadline`.
/// Returns the readable ones (an error or hang-up counts as readable, so
/// the reader sees it).
func pollReadable(_ descriptors: [Int32], until deadline: ContinuousClock.Instant?) -> Set<Int32> {
    var entries = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    var timeout: Int32 = -1
    if let deadline {
        let remaining = ContinuousClock.now.duration(to: deadline)
        let milliseconds = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
        timeout = Int32(clamping: max(0, milliseconds + 1))
    }
    let result = poll(&entries, nfds_t(entries.count), timeout)
    guard result > 0 else { return [] }
    return Set(entries.filter { $0.revents != 0 }.map(\.fd))
}

/// A pipe whose ends are closed in every program started later (`pipe2`
/// is behind _GNU_SOURCE, which Swift's Glibc module does not define).
func closeOnExecPipe() throws(HelperFailure) -> [Int32] {
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { throw HelperFailure("pipe: \(String(cString: strerror(errno)))", code: CLIExitCode.storage) }
    for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
    return ends
}
