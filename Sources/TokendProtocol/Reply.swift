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
            return fields.isEmpty ? "OK\n" : "OK " + fields.joined(separator: " ") + "\n"
        case .error(let code, let message, let fields):
            var line = "ERR \(code.rawValue) \(Self.singleLine(message))"
            if !fields.isEmpty { line += " " + fields.joined(separator: " ") }
            return line + "\n"
        }
    }

    static func singleLine(_ text: String) -> String {
        let cleaned = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
        return cleaned.isEmpty ? "-" : cleaned
    }

    package static func error(_ error: ProtocolError) -> Reply {
        .error(error.code, error.message)
    }
}
