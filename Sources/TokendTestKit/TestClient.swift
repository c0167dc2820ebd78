import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// A blocking Unix-socket client for tests. Every call runs on a thread of
/// its own (see ``blocking(_:)``), so blocking I/O never starves the two
/// threads of the concurrency pool.
package final class TestClient: @unchecked Sendable {
    // @unchecked: used from one thread at a time by the test that owns it.
    package let fd: Int32
    private var buffer: [UInt8] = []

    package init(path: String, receiveTimeout: Double = 10) throws {
        fd = UnixSocket.connect(path)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout - Double(Int(receiveTimeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
    }

    package func send(_ text: String) {
        sendBytes(Array(text.utf8))
    }

    package func sendBytes(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// The next line, or nil if the server closed the connection (or the
    /// receive timeout passed).
    package func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    package func request(_ line: String) -> String? {
        send(line + "\n")
        return readLine()
    }

    /// True once the server has closed its side.
    package func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

/// Runs blocking work on a new thread and awaits its result.
package func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
