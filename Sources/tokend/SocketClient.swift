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
            throw .cannotConnect("cannot connect to \(path): \(String(cString: strerror(errno))) (is tokend running? is --socket right?)")
        }
        descriptor = fd
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
