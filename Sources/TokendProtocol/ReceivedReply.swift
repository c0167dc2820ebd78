/// A reply line as a client reads it: the one reply parser of the project,
/// used by the `tokend` client commands and helpers.
package enum ReceivedReply: Sendable, Hashable {
    /// `OK` and its fields.
    case ok([String])
    /// `ERR <code> <detail>`: the code as sent (a newer agent may send one
    /// this client does not know), and the rest of the line: the message,
    /// then any `key=value` fields.
    case error(code: String, detail: String)

    /// Nil for a line that is neither `OK ...` nor `ERR <code> ...`.
    package init?(line: String) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        switch words.first {
        case "OK": self = .ok(words.dropFirst().map(String.init))
        case "ERR" where words.count >= 2:
            self = .error(code: String(words[1]), detail: words.dropFirst(2).joined(separator: " "))
        default: return nil
        }
    }

    /// The token of a `GET` (or `WATCH`, `REFRESH`) answer:
    /// `OK <token> <expires_in> <token_type> [key=value...]`.
    package var token: (value: String, expiresIn: Int, type: String)? {
        guard case .ok(let fields) = self, fields.count >= 3, let expiresIn = Int(fields[1]) else { return nil }
        return (fields[0], max(0, expiresIn), fields[2])
    }

    /// The `key=value` words of the reply (the key ends at the first `=`):
    /// an `OK`'s fields, or an error's trailing fields such as `retry_after=`.
    package var options: [String: String] {
        switch self {
        case .ok(let fields): Self.options(fields)
        case .error(_, let detail): Self.options(detail.split(separator: " "))
        }
    }

    /// `key=value` words as a dictionary (the key ends at the first `=`);
    /// other words are skipped.
    package static func options(_ words: some Sequence<some StringProtocol>) -> [String: String] {
        var result: [String: String] = [:]
        for word in words {
            guard let equals = word.firstIndex(of: "=") else { continue }
            result[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        return result
    }
}
