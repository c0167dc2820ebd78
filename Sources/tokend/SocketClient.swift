import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking client of the line protocol, used by every `tokend`
/// client command: connect, send a line, read reply lines. With a deadline
/// (probes, waits), no step may block past it, so an agent that accepts
/// connections but does not answer (a full backlog, a stuck process) costs
/// the caller its deadline and no more.
final class SocketClient {
    enum Failure: Error, Equatable {
        /// No agent there (no file, not a socket, refused, a permission, or
        /// the deadline passed while connecting).
        case cannotConnect(String)
        /// Connected, but no complete reply line before the deadline.
        case timedOut
        /// The agent closed the connection, or sent something that is not a reply line.
        case broken(String)
    }

    /// Longest reply line accepted: far above any token, far below a memory problem.
    static let maximumReplyLength = 1 << 20

    private let descriptor: Int32
    private let deadline: ContinuousClock.Instant?
    private var buffer: [UInt8] = []

    init(path: String, deadline: ContinuousClock.Instant? = nil) throws(Failure) {
        guard let (resolved, length) = UnixSocket.address(path) else {
            throw .cannotConnect("\(path) is not a usable socket path")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .cannotConnect("cannot create a socket: \(String(cString: strerror(errno)))") }
        self.descriptor = fd
        self.deadline = deadline
        // A Unix stream connect blocks while the listener's backlog is full;
        // SO_SNDTIMEO bounds that wait as well as the writes.
        if deadline != nil, !limit(SO_SNDTIMEO) { throw .timedOut }
        var address = resolved
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        guard connected == 0 else {
            let code = errno
            let reason = String(cString: strerror(code))
            switch code {
            case EACCES: throw .cannotConnect("cannot connect to \(path): \(reason): \(Self.permissionAdvice(path))")
            case EAGAIN where deadline != nil: throw .cannotConnect("cannot connect to \(path): the agent does not accept connections")
            default: throw .cannotConnect("cannot connect to \(path): \(reason) (is tokend running? is --socket right?)")
            }
        }
    }

    deinit {
        close(descriptor)
    }

    /// One request line and its reply, all before `deadline`.
    static func request(_ line: String, path: String, until deadline: ContinuousClock.Instant) -> Result<String, Failure> {
        Result { () throws(Failure) -> String in try SocketClient(path: path, deadline: deadline).request(line) }
    }

    /// Sends one request line and returns the reply line (without `\n`).
    func request(_ line: String) throws(Failure) -> String {
        try send(line)
        return try readLine()
    }

    func send(_ line: String) throws(Failure) {
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw errno == EAGAIN && deadline != nil ? .timedOut : .broken("the agent closed the connection")
            }
            offset += written
        }
    }

    func readLine() throws(Failure) -> String {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            guard buffer.count <= Self.maximumReplyLength else { throw .broken("the reply is longer than 1 MiB") }
            if deadline != nil, !limit(SO_RCVTIMEO) { throw .timedOut }
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw errno == EAGAIN && deadline != nil
                    ? .timedOut : .broken("cannot read the reply: \(String(cString: strerror(errno)))")
            }
            guard count > 0 else { throw .broken("the agent closed the connection") }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    /// Sets a socket timeout to the time left before the deadline; false if
    /// none is left. A zero timeval means "forever" to the kernel, so it is
    /// never set.
    private func limit(_ option: Int32) -> Bool {
        guard let deadline else { return true }
        let left = deadline - .now
        guard left > .milliseconds(1) else { return false }
        let (seconds, attoseconds) = left.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        return setsockopt(descriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size)) == 0
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
}
