import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process for end-to-end tests, spawned with a clean signal mask.
///
/// Why not Foundation's `Process`: children of a Swift test process start
/// with SIGTERM blocked, so a graceful-shutdown test would wait forever.
/// Here the mask is emptied and signal dispositions reset in the child.
/// Output goes to a file, never to the test's own stderr.
package final class ChildProcess: Sendable {
    package let pid: pid_t
    package let outputPath: String

    /// - Parameter output: file receiving the child's stdout and stderr.
    package init(_ executable: String, _ arguments: [String], output: String, environment: [String: String]? = nil) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let environment = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in environment { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, argv, environment)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EIO) }
        pid = child
        outputPath = output
    }

    package func signal(_ signal: Int32) {
        Glibc.kill(pid, signal)
    }

    /// Waits up to `timeout` for the child to exit; returns its exit status
    /// (or 128 + signal), or nil if it is still running. Polls, so no
    /// thread of the concurrency pool blocks in `waitpid`.
    package func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signal = status & 0x7F
                return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
            }
            if result < 0 { return nil }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// SIGKILL and reap, for teardown.
    package func kill() async {
        signal(SIGKILL)
        _ = await wait(timeout: .seconds(5))
    }

    package var output: String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }
}
