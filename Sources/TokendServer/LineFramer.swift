import NIOCore
import TokendProtocol

/// One unit of input: a complete line, parsed (once), or the news that a
/// line grew past the limit (after which the connection is closed).
enum Frame: Sendable {
    case request(Result<Request, ProtocolError>)
    case tooLong
}

/// Splits a connection's bytes into lines of at most `maximumLength` bytes
/// (the `\n` included) and parses each, one at a time, so the connection
/// can stop between two lines (a request waiting on the engine, a client
/// that does not read) and keep the rest as bytes: what one connection
/// holds is bounded by what it read, never by how many lines that was.
/// A client that never sends `\n` costs at most `maximumLength` bytes.
struct LineFramer {
    let maximumLength: Int
    /// Bytes read and not yet framed.
    private var pending: ByteBuffer?
    /// Of `pending`, the bytes already searched for `\n`, so a slow client
    /// is not rescanned on every read.
    private var scanned = 0
    private(set) var overflowed = false

    init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    /// Memory the framer holds (its buffer's capacity), for tests.
    var retainedBytes: Int { pending?.capacity ?? 0 }

    /// Bytes that may still hold a complete line.
    var isEmpty: Bool { (pending?.readableBytes ?? 0) == 0 }

    mutating func append(_ bytes: ByteBuffer) {
        guard !overflowed else { return }
        if pending == nil || pending!.readableBytes == 0 {
            pending = bytes
            scanned = 0
        } else {
            // Lines already framed are dropped before more is appended, or
            // a client whose writes always end mid-line would have its
            // buffer keep everything it ever sent.
            if pending!.readerIndex >= maximumLength { pending!.discardReadBytes() }
            var incoming = bytes
            pending!.writeBuffer(&incoming)
        }
    }

    /// The next frame, or nil until more bytes arrive.
    mutating func next() -> Frame? {
        guard !overflowed, var buffer = pending, buffer.readableBytes > 0 else { return nil }
        pending = nil  // unique, so reading it does not copy
        defer { pending = buffer }
        let start = min(scanned, buffer.readableBytes)
        let found = buffer.withUnsafeReadableBytes { bytes -> (Frame, consumed: Int)? in
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            guard newline + 1 <= maximumLength else { return (.tooLong, 0) }
            return (.request(RequestParser.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<newline]))), newline + 1)
        }
        guard let (frame, consumed) = found else {
            scanned = buffer.readableBytes
            guard buffer.readableBytes >= maximumLength else { return nil }
            overflowed = true
            buffer.clear()
            return .tooLong
        }
        scanned = 0
        if case .tooLong = frame {
            overflowed = true
            buffer.clear()
        } else {
            buffer.moveReaderIndex(forwardBy: consumed)
        }
        return frame
    }
}
