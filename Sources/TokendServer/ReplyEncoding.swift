import NIOCore
import TokendProtocol

extension ByteBuffer {
    /// Writes `reply.line`, byte for byte, without building the line as a
    /// string first: an `OK` reply's fields go straight into the buffer
    /// (a token reply is about a kilobyte, sent on every `GET`).
    mutating func writeReply(_ reply: Reply) {
        guard case .ok(let fields) = reply, fields.allSatisfy(Reply.isWord) else {
            writeString(reply.line)
            return
        }
        reserveCapacity(minimumWritableBytes: fields.reduce(3) { $0 + $1.utf8.count + 1 })
        writeStaticString("OK")
        for field in fields {
            writeInteger(UInt8(ascii: " "))
            writeString(field)
        }
        writeInteger(UInt8(ascii: "\n"))
    }
}
