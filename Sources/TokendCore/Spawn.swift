import CTokendSystem

#if canImport(Glibc)
import Glibc
#endif

/// Starting a program with posix_spawn: argv only, never a shell; a clean
/// signal mask and default dispositions, whatever this process had blocked
/// or caught (a Swift process runs with SIGTERM blocked in some threads,
/// and its children would inherit that).
///
/// The one place the project starts processes: `tokend exec`, rotation
/// hooks and the test kit all come through here. Foundation's `Process`
/// is not used: on Linux it copies every open descriptor number into its
/// spawn actions, and crashed test processes that held many sockets.
public enum Spawn {
    /// Where a child's standard input comes from.
    public enum Input: Sendable {
        case null
        /// Duplicated onto descriptor 0; the caller still owns and closes it.
        case descriptor(Int32)
        /// Opened read-only.
        case file(String)
    }

    /// Where a child's standard output or error goes.
    public enum Output: Sendable {
        /// This process's own descriptor.
        case inherit
        /// Duplicated; the caller still owns and closes it.
        case descriptor(Int32)
        /// Created if missing (mode 0600) and appended to.
        case file(String)
        /// For standard error: wherever standard output went.
        case standardOutput
    }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let program: String
        public let code: Int32
        public var description: String { "cannot run \(program): \(String(cString: strerror(code)))" }
    }

    /// Starts `argv` with `environment` (searched in `$PATH` when
    /// `argv[0]` has no slash).
    ///
    /// - Parameter closeOthers: close every descriptor above 2 in the
    ///   child. Descriptors the agent opens are close-on-exec already;
    ///   this also covers ones a library or test left inheritable. `exec`
    ///   passes false, so a supervised program still gets descriptors its
    ///   own parent meant for it (socket activation).
    public static func start(
        _ argv: [String], environment: [String: String],
        stdin: Input = .null, stdout: Output = .inherit, stderr: Output = .inherit,
        closeOthers: Bool = true
    ) throws(Failure) -> pid_t {
        precondition(!argv.isEmpty, "a program to run")
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        // Applied in order in the child: redirections first, then the
        // closing, which must not take the descriptors just set up.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        switch stdin {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        }
        for (target, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .inherit: break
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            case .standardOutput: posix_spawn_file_actions_adddup2(&actions, 1, target)
            }
        }
        if closeOthers { _ = tokend_spawn_close_from(&actions, 3) }

        let arguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in arguments { free(pointer) } }
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in variables { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawnp(&child, argv[0], &actions, &attributes, arguments, variables)
        guard result == 0 else { throw Failure(program: argv[0], code: result) }
        return child
    }

    /// The exit status of a reaped child as a shell reports it: its exit
    /// code, or 128 + the signal that ended it.
    public static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    /// Reaps `pid` if it has ended; returns its exit code, else nil (also
    /// nil if it is not a child of this process).
    public static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result < 0 && errno == EINTR { continue }
            return result == pid ? exitCode(status) : nil
        }
    }

    /// Waits for `pid` to end, blocking this thread; its exit code, or nil
    /// if it is not a child of this process.
    public static func wait(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, 0)
            if result < 0 && errno == EINTR { continue }
            return result == pid ? exitCode(status) : nil
        }
    }
}
