/// The name of a service identity, such as `billing-worker` or
/// `user:42@transmit`.
///
/// The grammar is fixed by the socket protocol (docs/PROTOCOL.md):
/// `[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}`. Validating it once, here, means no
/// later layer has to wonder whether a name could contain a space, a newline
/// or a NUL that would break a reply line, a log line or a file name.
package struct IdentityName: Sendable, Hashable, Comparable, CustomStringConvertible {
    package let rawValue: String

    /// Returns nil unless `rawValue` matches the identity-name grammar.
    package init?(_ rawValue: String) {
        guard Self.isValid(rawValue.utf8) else { return nil }
        self.rawValue = rawValue
    }

    /// Checks the grammar on raw bytes, so the protocol codec can validate
    /// without building a `String` first.
    package static func isValid<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        let count = bytes.count
        guard count >= 1, count <= 128 else { return false }
        var isFirst = true
        for byte in bytes {
            let isAlphanumeric = (byte >= 0x30 && byte <= 0x39)  // 0-9
                || (byte >= 0x41 && byte <= 0x5A)  // A-Z
                || (byte >= 0x61 && byte <= 0x7A)  // a-z
            if isFirst {
                guard isAlphanumeric else { return false }
                isFirst = false
                continue
            }
            switch byte {
            case 0x2E, 0x5F, 0x3A, 0x40, 0x2F, 0x2D:  // . _ : @ / -
                continue
            default:
                guard isAlphanumeric else { return false }
            }
        }
        return true
    }

    package var description: String { rawValue }

    package static func < (lhs: IdentityName, rhs: IdentityName) -> Bool {
        // Byte order, so that LIST pagination (`after=<name>`) is stable and
        // matches SQLite's BINARY collation.
        lhs.rawValue.utf8.lexicographicallyPrecedes(rhs.rawValue.utf8)
    }
}
