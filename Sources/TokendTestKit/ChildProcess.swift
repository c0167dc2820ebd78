import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// A child process for end-to-end tests, started through `Spawn` (a clean
/// signal mask, no inherited descriptors above 2).
///
/// Why not Foundation's `Process`: children of a Swift test process would
/// start with SIGTERM blocked, so a graceful-shutdown test waited forever;
/// and `Process.run()` crashed the test process while it listed the many
/// descriptors parallel tests hold open.
package final class ChildProcess: Sendable {
    package let pid: pid_t
    package let outputPath: String?

    /// - Parameter output: file receiving the child's stdout and stderr.
    package convenience init(_ executable: String, _ arguments: [String], output: String, environment: [String: String]? = nil) throws {
        try self.init(executable, arguments, stdout: .file(output), stderr: .standardOutput, environment: environment)
    }

    package init(
        _ executable: String, _ arguments: [String],
        stdin: Spawn.Input = .null, stdout: Spawn.Output, stderr: Spawn.Output,
        environment: [String: String]? = nil
    ) throws {
        pid = try Spawn.start(
            [executable] + arguments, environment: environment ?? ProcessInfo.processInfo.environment,
            stdin: stdin, stdout: stdout, stderr: stderr)
        if case .file(let path) = stdout { outputPath = path } else { outputPath = nil }
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
            if let status = Spawn.reap(pid) { return status }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the child to exit, blocking this thread; for synchronous
    /// helpers whose child ends by itself.
    package func waitBlocking() -> Int32 {
        Spawn.wait(pid) ?? -1
    }

    /// SIGKILL and reap, for teardown.
    package func kill() async {
        signal(SIGKILL)
        _ = await wait(timeout: .seconds(5))
    }

    package var output: String {
        guard let outputPath else { return "" }
        return (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }
}
