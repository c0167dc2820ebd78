import NIOCore
import Testing
import TokendCore
import TokendProtocol
@testable import TokendServer

/// The server writes replies straight into its buffers; what it writes must
/// be `Reply.line`, byte for byte, hostile fields included.
@Suite("Reply encoding")
struct ReplyEncodingTests {
    static let replies: [Reply] = [
        .ok(["PONG"]),
        .ok([]),
        .ok([String(repeating: "eyJ.abc-_~+/=", count: 80), "86399", "Bearer", "stale=1"]),
        .ok(["tok\nOK injected 999 Bearer", "3600", "Bearer"]),
        .ok(["tok en", "1", "B"]),
        .ok(["", "1", "B"]),
        .ok(["tök", "1", "B"]),
        .ok(["tok\u{7F}", "1", "B"]),
        .error(.unavailable, "no valid token\r\nfor x", fields: ["retry_after=5"]),
        .error(.forbidden, ""),
        .error(.badRequest, "bad \"ré\u{2028}x\u{85}\""),
    ]

    @Test(arguments: replies)
    func theBufferHoldsExactlyTheLine(reply: Reply) {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeReply(reply)
        #expect(buffer.readString(length: buffer.readableBytes) == reply.line)
    }
}
