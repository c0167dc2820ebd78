import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// Where the listening socket comes from: systemd socket activation, or a
/// file the agent binds itself.
enum SocketBinding {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The listening descriptor systemd passed (`LISTEN_FDS`), if it is for
    /// this process (`LISTEN_PID`). The variables are removed so that
    /// children do not think the socket is theirs.
    static func systemdSocket(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32? {
        guard let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap(Int.init), count >= 1
        else { return nil }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        return 3  // SD_LISTEN_FDS_START
    }

    /// Refuses a passed descriptor that is not a listening Unix stream
    /// socket (a unit with `Accept=yes` passes a connection; a
    /// `ListenDatagram=` one, a datagram socket): the agent could not
    /// accept on it, and says so at start rather than failing every client.
    static func requireListeningStreamSocket(_ descriptor: Int32) throws {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(descriptor, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard option(SO_DOMAIN) == AF_UNIX, option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1 else {
            throw Failure(
                description: "the descriptor systemd passed (\(descriptor)) is not a listening Unix stream socket; "
                    + "use ListenStream= with a path and Accept=no")
        }
    }

    /// Prepares `path` for binding: refuses if a live agent answers there,
    /// removes a stale socket file, refuses to touch anything else.
    static func clear(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            }
            return
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw Failure(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        if isAnswering(path) {
            throw Failure(description: "another agent is already listening on \(path)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether something accepts connections on the socket file at `path`.
    static func isAnswering(_ path: String) -> Bool {
        let fd = UnixSocket.connect(path)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// A new stream socket bound to `path` and listening, close-on-exec.
    static func listen(_ path: String, backlog: Int32) throws -> Int32 {
        guard let (resolved, length) = UnixSocket.address(path) else {
            throw Failure(description: "socket path \(path) is too long")
        }
        var address = resolved
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw Failure(description: "cannot create a socket: \(String(cString: strerror(errno)))")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0, Glibc.listen(descriptor, backlog) == 0 else {
            let failure = String(cString: strerror(errno))
            close(descriptor)
            throw Failure(description: "cannot listen on \(path): \(failure)")
        }
        return descriptor
    }

    /// A new private (0700) directory beside `path`, to bind in before the
    /// socket is renamed into place. Short, so the staged path fits
    /// `sun_path` whenever `path` does.
    static func stagingDirectory(for path: String) throws -> String {
        let directory = (path as NSString).deletingLastPathComponent
        // mkdtemp(3) replaces the six trailing placeholder characters.
        let placeholder = String(repeating: "X", count: 6)
        var template = Array("\(directory.isEmpty ? "." : directory)/.tk\(placeholder)".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw Failure(description: "cannot create a staging directory beside \(path): \(String(cString: strerror(errno)))")
        }
        return String(cString: created)
    }

    /// Applies the configured mode and group after binding.
    static func applyPermissions(_ path: String, mode: UInt32, group: String?) throws {
        if let group {
            guard let gid = Accounts.gid(ofGroup: group) else {
                throw Failure(description: "socket group \(group) does not exist")
            }
            guard chown(path, uid_t(UInt32.max), gid) == 0 else {
                throw Failure(description: "cannot give \(path) to group \(group): \(String(cString: strerror(errno)))")
            }
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw Failure(description: "cannot set mode of \(path): \(String(cString: strerror(errno)))")
        }
    }
}
