#if canImport(Glibc)
import Glibc
#endif

/// Small POSIX helpers for Unix domain sockets, shared by the agent, the
/// command-line client and the tests.
package enum UnixSocket {
    /// A `sockaddr_un` for `path` and its length, or nil if the path does
    /// not fit. A leading `@` names an abstract socket (Linux).
    package static func address(_ path: String) -> (sockaddr_un, socklen_t)? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            if !abstract { raw[bytes.count] = 0 }
        }
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)
        return (address, socklen_t(length))
    }

    /// Connects a new stream socket to `path`; returns the descriptor, or
    /// -1 with `errno` set.
    package static func connect(_ path: String) -> Int32 {
        guard let (resolved, length) = address(path) else {
            errno = ENAMETOOLONG
            return -1
        }
        var address = resolved
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        guard result == 0 else {
            let saved = errno
            close(fd)
            errno = saved
            return -1
        }
        return fd
    }
}

/// Looks up users and groups by name (NSS: /etc/passwd, /etc/group, ...).
package enum Accounts {
    /// The uid of `name` (or `name` itself if it is a number).
    package static func uid(ofUser name: String) -> UInt32? {
        if let number = UInt32(name) { return number }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    /// The gid of `name` (or `name` itself if it is a number).
    package static func gid(ofGroup name: String) -> UInt32? {
        if let number = UInt32(name) { return number }
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}
