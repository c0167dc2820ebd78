import Foundation
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Runs the real `tokend` binary as a child process.
///
/// Output goes to temporary files rather than pipes, and the wait is a
/// termination handler rather than `waitUntilExit()`, so no test thread
/// blocks (the concurrency pool has only two threads on CI machines).
struct CommandRunner {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var wasKilled: Bool
    }

    /// The `tokend` executable built next to the test bundle.
    static var tokendPath: String {
        if let path = ProcessInfo.processInfo.environment["TOKEND_BINARY"] { return path }
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundleDirectory.appendingPathComponent("tokend").path
    }

    /// Runs `tokend` with `arguments`; if `killAfter` is set, sends SIGKILL
    /// after that long (unless it has already exited).
    static func tokend(_ arguments: [String], stdin: Data? = nil, killAfter: Duration? = nil) async throws -> Result {
        try await run(tokendPath, arguments, stdin: stdin, killAfter: killAfter)
    }

    /// Runs any executable the same way.
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, killAfter: Duration? = nil) async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("out")
        let errURL = directory.appendingPathComponent("err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        if let stdin {
            let inURL = directory.appendingPathComponent("in")
            FileManager.default.createFile(atPath: inURL.path, contents: stdin)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }

        let exited = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in
            exited.continuation.yield()
            exited.continuation.finish()
        }
        try ProcessLaunch.run(process)
        if let killAfter {
            try await Task.sleep(for: killAfter)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        for await _ in exited.stream {}
        return Result(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "",
            wasKilled: process.terminationReason == .uncaughtSignal)
    }

    /// The `[vault]` and `[socket]` sections of a test's configuration: the
    /// vault and its key in `directory`, the socket at `socket`.
    static func configHeader(directory: String, socket: String, socketExtra: String = "") -> String {
        """
        [vault]
        path = "\(directory)/vault.db"
        key_file = "\(directory)/vault.key"

        [socket]
        path = "\(socket)"
        \(socketExtra)

        """
    }
}
