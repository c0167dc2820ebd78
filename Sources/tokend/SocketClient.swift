import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking client of the line protocol: what any program could
/// write in twenty lines, used by the `tokend` client commands.
final class SocketClient {
    enum Failure: Error {
        case cannotConnect(String)
        case closed
    }

    private let descriptor: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws(Failure) {
        let fd = UnixSocket.connect(path)
        guard fd >= 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            if code == EACCES {
                throw .cannotConnect("cannot connect to \(path): \(reason): \(Self.permissionAdvice(path))")
            }
            throw .cannotConnect("cannot connect to \(path): \(reason) (is tokend running? is --socket right?)")
        }
        descriptor = fd
    }

    /// Why a connection was refused with EACCES, and what to do: the socket
    /// admits its group (`tokend-clients` in the packaged units), so name
    /// that group and whether this user merely needs a new login session.
    static func permissionAdvice(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return "this user may not enter the socket's directory (ask an administrator to check its mode)"
        }
        guard let entry = getgrgid(info.st_gid), let groupPointer = entry.pointee.gr_name else {
            return "only the socket's group (gid \(info.st_gid)) may connect"
        }
        let group = String(cString: groupPointer)
        let user = getpwuid(geteuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "\(geteuid())"
        var listed = false
        if var member = entry.pointee.gr_mem {
            while let name = member.pointee {
                if String(cString: name) == user { listed = true }
                member += 1
            }
        }
        if listed {
            return "user \(user) was added to group \(group) after this session started; log in again (or run `newgrp \(group)`)"
        }
        return "only members of group \(group) may connect; user \(user) is not one "
            + "(an administrator can run `usermod -aG \(group) \(user)`, then \(user) logs in again)"
    }

    deinit {
        close(descriptor)
    }

    /// Sends one request line and returns the reply line (without `\n`).
    func request(_ line: String) throws(Failure) -> String {
        try send(line)
        return try readLine()
    }

    func send(_ line: String) throws(Failure) {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .closed
            }
            offset += written
        }
    }

    func readLine() throws(Failure) -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .closed }
            buffer.append(contentsOf: chunk[..<count])
        }
    }
}
