import Foundation

/// Starts Foundation `Process`es one at a time. Tests run in parallel, and
/// concurrent `Process.run()` calls crashed the test process here (a
/// Foundation race while it copies the environment and arguments); the
/// children themselves still run concurrently.
package enum ProcessLaunch {
    private static let lock = NSLock()

    package static func run(_ process: Process) throws {
        lock.lock()
        defer { lock.unlock() }
        try process.run()
    }
}
