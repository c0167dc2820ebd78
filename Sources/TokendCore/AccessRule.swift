/// One entry of an identity's allow list: who may read its token.
///
/// Written as `uid:1001`, `user:billing`, `gid:200`, `group:workers` or
/// `unit:billing-worker.service`. Names are resolved when a peer connects,
/// not when the rule is written, so a user created later is honoured.
package enum AccessRule: Sendable, Hashable, CustomStringConvertible {
    case uid(UInt32)
    case user(String)
    case gid(UInt32)
    case group(String)
    /// A systemd unit, matched against the peer's cgroup.
    case unit(String)

    /// Parses a rule; nil if it is not one of the five forms.
    package init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let kind = text[..<colon]
        let value = String(text[text.index(after: colon)...])
        guard !value.isEmpty, value.count <= 256 else { return nil }
        switch kind {
        case "uid":
            guard let id = UInt32(value) else { return nil }
            self = .uid(id)
        case "gid":
            guard let id = UInt32(value) else { return nil }
            self = .gid(id)
        case "user":
            guard Self.isAccountName(value) else { return nil }
            self = .user(value)
        case "group":
            guard Self.isAccountName(value) else { return nil }
            self = .group(value)
        case "unit":
            guard value.hasSuffix(".service") || value.hasSuffix(".scope"),
                value.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ":-_.@\\".unicodeScalars.contains($0)) })
            else { return nil }
            self = .unit(value)
        default:
            return nil
        }
    }

    package var description: String {
        switch self {
        case .uid(let id): "uid:\(id)"
        case .user(let name): "user:\(name)"
        case .gid(let id): "gid:\(id)"
        case .group(let name): "group:\(name)"
        case .unit(let name): "unit:\(name)"
        }
    }

    /// POSIX-ish account names: letters, digits, `_`, `-`, `.`, not starting with `-`.
    private static func isAccountName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first != "-" else { return false }
        return name.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.$".unicodeScalars.contains($0))
        }
    }
}
