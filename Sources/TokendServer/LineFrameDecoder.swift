import NIOCore
import TokendProtocol

/// What the framer hands on: a complete line, parsed (once: the fast path
/// and the async handler both use this), or the news that a line grew past
/// the limit (after which the connection is closed).
enum Frame: Sendable {
    case request(Result<Request, ProtocolError>)
    case tooLong
}

/// Splits the byte stream into lines of at most `maximumLength` bytes and
/// parses each
/// (the `\n` included), unlike NIO's unbounded `LineBasedFrameDecoder`: a
/// client that never sends `\n` costs at most `maximumLength` bytes.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame

    let maximumLength: Int
    private var overflowed = false
    /// Bytes already searched for `\n`, so a slow client is not rescanned.
    private var scanned = 0

    init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if overflowed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let view = buffer.readableBytesView
        let start = view.index(view.startIndex, offsetBy: min(scanned, view.count))
        guard let newline = view[start...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if view.count >= maximumLength { overflow(context: context, buffer: &buffer) }
            return .needMoreData
        }
        let length = view.distance(from: view.startIndex, to: newline)
        scanned = 0
        guard length + 1 <= maximumLength else {
            overflow(context: context, buffer: &buffer)
            return .needMoreData
        }
        let request = RequestParser.parse(view[view.startIndex..<newline])
        buffer.moveReaderIndex(forwardBy: length + 1)
        context.fireChannelRead(wrapInboundOut(.request(request)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A final line without `\n` is not a request; drop it.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    private mutating func overflow(context: ChannelHandlerContext, buffer: inout ByteBuffer) {
        overflowed = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        context.fireChannelRead(wrapInboundOut(.tooLong))
    }
}
