import NIOCore
import TokendProtocol

extension [UInt8] {
    /// Appends `reply.line`, byte for byte, without building the line as a
    /// string first: an `OK` reply's fields go straight into the bytes (a
    /// token reply is about a kilobyte, sent on every `GET`).
    mutating func appendReply(_ reply: Reply) {
        guard case .ok(let fields) = reply, fields.allSatisfy(Reply.isWord) else {
            append(contentsOf: reply.line.utf8)
            return
        }
        reserveCapacity(count + fields.reduce(3) { $0 + $1.utf8.count + 1 })
        append(UInt8(ascii: "O"))
        append(UInt8(ascii: "K"))
        for field in fields {
            append(UInt8(ascii: " "))
            append(contentsOf: field.utf8)
        }
        append(UInt8(ascii: "\n"))
    }
}

extension ByteBuffer {
    /// Writes `reply.line` (see `[UInt8].appendReply`).
    mutating func writeReply(_ reply: Reply) {
        var bytes: [UInt8] = []
        bytes.appendReply(reply)
        writeBytes(bytes)
    }
}
