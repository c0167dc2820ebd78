/// One reply line: `OK ...` or `ERR <code> <message> [key=value...]`.
package enum Reply: Sendable, Hashable {
    /// `OK` followed by space-separated fields.
    case ok([String])
    /// `ERR <code> <message>` and optional trailing `key=value` fields.
    case error(ErrorCode, String, fields: [String] = [])

    /// The reply as bytes, with the final `\n`. A message is made safe for a
    /// single line (no control characters); it never contains a secret
    /// because no code path puts one there.
    package var line: String {
        switch self {
        case .ok(let fields):
            // A field is one printable word by construction (the provider
            // gate checks tokens); should one ever hold a space or a control
            // byte, it would split the line or forge the next reply.
            guard fields.allSatisfy(Self.isWord) else {
                return Reply.error(.internal, Self.unprintableField).line
            }
            return fields.isEmpty ? "OK\n" : "OK " + fields.joined(separator: " ") + "\n"
        case .error(let code, let message, let fields):
            var line = "ERR \(code.rawValue) \(Self.singleLine(message))"
            if !fields.isEmpty { line += " " + fields.joined(separator: " ") }
            return line + "\n"
        }
    }

    /// The message of the `ERR internal` that replaces a reply with a field
    /// that is not one printable word.
    package static let unprintableField = "a reply field was not printable; see the agent's log"

    package static func isWord(_ field: String) -> Bool {
        // Over the contiguous bytes: a token is up to 16 KiB and this runs
        // for every reply, so it must be a plain loop, not a view walk.
        var field = field
        return field.withUTF8 { bytes in !bytes.isEmpty && isPrintableASCII(UnsafeRawBufferPointer(bytes)) }
    }

    /// Every byte in 0x21...0x7E. Eight bytes at a time: in a 64-bit word,
    /// `(x - 0x21…21) & ~x & 0x80…80` is non-zero iff some byte is below
    /// 0x21 (exact as a yes/no for thresholds up to 0x80), and
    /// `((x + 0x01…01) | x) & 0x80…80` iff some byte is 0x7F or above
    /// (a carry out of one byte only happens from a byte that is itself
    /// 0xFF, already caught).
    static func isPrintableASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        var offset = 0
        while offset + 8 <= bytes.count {
            let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            let below = (word &- ones &* 0x21) & ~word & highBits
            let above = ((word &+ ones) | word) & highBits
            if below | above != 0 { return false }
            offset += 8
        }
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte <= 0x20 || byte >= 0x7F { return false }
            offset += 1
        }
        return true
    }

    static func singleLine(_ text: String) -> String {
        // Printable ASCII only: besides control bytes, Unicode has its own
        // line breaks (U+0085, U+2028) that some clients split lines on.
        let cleaned = String(text.unicodeScalars.map { scalar -> Character in
            if scalar.value < 0x20 || scalar.value == 0x7F { return " " }
            return scalar.isASCII ? Character(scalar) : "?"
        })
        return cleaned.isEmpty ? "-" : cleaned
    }

    package static func error(_ error: ProtocolError) -> Reply {
        .error(error.code, error.message)
    }
}
