import NIOCore
import Testing
import TokendProtocol
@testable import TokendServer

@Suite("Line framer")
struct LineFramerTests {
    func buffer(_ bytes: some Sequence<UInt8>) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeBytes(Array(bytes))
        return buffer
    }

    /// A client whose writes always end in the middle of a line: what the
    /// framer holds stays bounded by the line limit, not by everything
    /// the client ever sent (8 MB here).
    @Test func memoryStaysBoundedWhenEveryReadEndsMidLine() {
        var framer = LineFramer(maximumLength: RequestParser.maximumLineLength)
        let line = Array(("PING" + String(repeating: " ", count: 3995) + "\n").utf8)
        let stream = Array((0..<2_000).map { _ in line }.joined())
        var frames = 0
        var largest = 0
        for start in stride(from: 0, to: stream.count, by: 3_000) {
            framer.append(buffer(stream[start..<min(start + 3_000, stream.count)]))
            while let frame = framer.next() {
                guard case .request(.success(.ping)) = frame else {
                    Issue.record("unexpected frame \(frame)")
                    return
                }
                frames += 1
            }
            largest = max(largest, framer.retainedBytes)
        }
        #expect(frames == 2_000)
        #expect(largest <= 4 * RequestParser.maximumLineLength, "held \(largest) bytes")
    }

    @Test func aLineOverTheLimitIsTooLongEvenWithoutANewline() {
        var framer = LineFramer(maximumLength: 16)
        framer.append(buffer(Array("PING\nPIN".utf8)))
        guard case .request(.success(.ping))? = framer.next() else {
            Issue.record("no PING")
            return
        }
        #expect(framer.next() == nil)
        framer.append(buffer(Array(repeating: UInt8(ascii: "G"), count: 20)))
        guard case .tooLong? = framer.next() else {
            Issue.record("not too long")
            return
        }
        // Nothing after it is framed: the connection is closed.
        framer.append(buffer(Array("PING\n".utf8)))
        #expect(framer.next() == nil)
    }
}
