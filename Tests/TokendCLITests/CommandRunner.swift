import Foundation
import TokendCore
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Runs the real `tokend` binary as a child process.
///
/// Output goes to temporary files rather than pipes, and the wait polls
/// rather than blocking in `waitpid`, so no test thread blocks (the
/// concurrency pool has only two threads on CI machines).
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
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outPath = directory.appendingPathComponent("out").path
        let errPath = directory.appendingPathComponent("err").path
        var input = Spawn.Input.null
        if let stdin {
            let inPath = directory.appendingPathComponent("in").path
            FileManager.default.createFile(atPath: inPath, contents: stdin)
            input = .file(inPath)
        }
        let child = try ChildProcess(executable, arguments, stdin: input, stdout: .file(outPath), stderr: .file(errPath))
        var status: Int32?
        if let killAfter {
            try await Task.sleep(for: killAfter)
            status = Spawn.reap(child.pid)
            if status == nil { child.signal(SIGKILL) }
        }
        while status == nil { status = await child.wait(timeout: .seconds(3600)) }
        return Result(
            status: status!,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            wasKilled: killAfter != nil && status! == 128 + SIGKILL)
    }

    /// A `[providers.transmit]` section for the fake Transmit server, its
    /// client secret in `directory/transmit.secret`.
    static func transmitProvider(_ fake: FakeTransmitServer, directory: String) -> String {
        """
        [providers.transmit]
        kind = "transmit"
        base_url = "\(fake.baseURL)"
        allow_insecure_http = true
        client_id = "\(FakeTransmitServer.clientID)"
        client_secret_file = "\(directory)/transmit.secret"
        """
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
