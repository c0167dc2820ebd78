import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Starting programs for `exec` and for rotation hooks: argv only, never
/// a shell; a clean signal mask and default dispositions, whatever this
/// process had blocked or caught.
enum Subprocess {
    /// Starts `argv` (searched in `$PATH` when it has no slash) with
    /// `environment`; standard input from `stdinDescriptor`, else
    /// `/dev/null`; standard output and error shared with this process.
    static func spawn(_ argv: [String], environment: [String: String], stdinDescriptor: Int32? = nil) throws(HelperFailure) -> pid_t {
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

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdinDescriptor {
            posix_spawn_file_actions_adddup2(&actions, stdinDescriptor, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }

        let arguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in arguments { free(pointer) } }
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in variables { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawnp(&child, argv[0], &actions, &attributes, arguments, variables)
        guard result == 0 else {
            throw HelperFailure("cannot run \(argv[0]): \(String(cString: strerror(result)))", code: 127)
        }
        return child
    }

    /// The exit status of a reaped child as a shell reports it: its exit
    /// code, or 128 + the signal that ended it.
    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    /// Reaps `pid` if it has ended; returns its exit code, else nil.
    static func reap(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result < 0 && errno == EINTR { continue }
            return result == pid ? exitCode(status) : nil
        }
    }
}
