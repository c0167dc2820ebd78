import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// One request line and its reply over the agent's socket, all within a
/// deadline: a probe or a wait must never hang on an agent that accepts
/// connections but does not answer (a full backlog, a stuck process).
enum DeadlineSocket {
    enum Failure: Error, Equatable {
        /// No agent there (no file, not a socket, refused, or the deadline passed while connecting).
        case cannotConnect(String)
        /// Connected, but no complete reply line before the deadline.
        case timedOut
        /// The agent closed the connection, or sent something that is not a reply line.
        case broken(String)
    }

    /// Longest reply accepted: far above any token, far below a memory problem.
    static let maximumReplyLength = 1 << 20

    static func request(_ line: String, path: String, until deadline: ContinuousClock.Instant) -> Result<String, Failure> {
        guard let (resolved, length) = UnixSocket.address(path) else {
            return .failure(.cannotConnect("\(path) is not a usable socket path"))
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.cannotConnect("cannot create a socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        // A Unix stream connect blocks while the listener's backlog is full;
        // SO_SNDTIMEO bounds that wait as well as the write.
        guard setTimeout(fd, SO_SNDTIMEO, until: deadline) else { return .failure(.timedOut) }
        var address = resolved
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        guard connected == 0 else {
            let reason = errno == EAGAIN ? "the agent does not accept connections" : String(cString: strerror(errno))
            return .failure(.cannotConnect("cannot connect to \(path): \(reason)"))
        }
        let bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return .failure(errno == EAGAIN ? .timedOut : .broken("the agent closed the connection"))
            }
            offset += written
        }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            if let newline = reply.firstIndex(of: 0x0A) {
                return .success(String(decoding: reply[..<newline], as: UTF8.self))
            }
            guard reply.count <= maximumReplyLength else { return .failure(.broken("the reply is longer than 1 MiB")) }
            guard setTimeout(fd, SO_RCVTIMEO, until: deadline) else { return .failure(.timedOut) }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(errno == EAGAIN ? .timedOut : .broken("cannot read the reply: \(String(cString: strerror(errno)))"))
            }
            guard count > 0 else { return .failure(.broken("the agent closed the connection without a reply")) }
            reply.append(contentsOf: chunk[..<count])
        }
    }

    /// Sets a socket timeout to the time left; false if none is left. A
    /// zero timeval means "forever" to the kernel, so it is never set.
    private static func setTimeout(_ fd: Int32, _ option: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        let left = deadline - .now
        guard left > .milliseconds(1) else { return false }
        let (seconds, attoseconds) = left.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        return setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size)) == 0
    }
}
