import Foundation
import TokendCore

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
        let environment = ProcessInfo.processInfo.environment
        guard tokenStdin else {
            do { return try Spawn.start(command, environment: environment) } catch { throw HelperFailure(error) }
        }
        let ends = try closeOnExecPipe()
        defer { close(ends[0]) }
        let pid: pid_t
        do {
            pid = try Spawn.start(command, environment: environment, stdin: .descriptor(ends[0]))
        } catch {
            close(ends[1])
            throw HelperFailure(error)
        }
        // One line, far below a pipe's buffer: this write does not block
        // even if the command never reads it.
        let line = Array((token + "\n").utf8)
        _ = line.withUnsafeBytes { write(ends[1], $0.baseAddress, $0.count) }
        close(ends[1])
        return pid
    }
}
