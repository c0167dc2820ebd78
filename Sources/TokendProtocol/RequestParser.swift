import Foundation
import TokendCore

/// Parses one request line (without its `\n`) into a ``Request``.
///
/// Pure and allocation-light: it works on the raw bytes and makes strings
/// only for fields it keeps. Every rule of docs/PROTOCOL.md's framing section is
/// checked here except the 4096-byte limit, which the framer enforces before
/// a line is complete.
package enum RequestParser {
    /// The longest request line, `\n` included.
    package static let maximumLineLength = 4096
    static let maximumTTL = 365 * 86_400
    package static let maximumListLimit = 1000

    package static func parse<Bytes: BidirectionalCollection<UInt8>>(_ raw: Bytes) -> Result<Request, ProtocolError> {
        if let parsed = raw.withContiguousStorageIfAvailable({ parse(UnsafeRawBufferPointer($0)) }) { return parsed }
        return Array(raw).withUnsafeBytes { parse($0) }
    }

    /// The server's entry: concrete, so it is compiled for raw bytes once
    /// rather than run as generic code across the module boundary (which
    /// cost a fifth of a request's CPU).
    package static func parse(_ raw: UnsafeRawBufferPointer) -> Result<Request, ProtocolError> {
        var line = raw[...]
        if line.last == 0x0D { line = line.dropLast() }
        if let get = quickGet(line) { return .success(get) }
        guard !line.contains(0) else { return .failure(bad("NUL byte in request")) }
        guard let text = String(validating: line, as: UTF8.self) else {
            return .failure(bad("request is not valid UTF-8"))
        }
        let fields = text.utf8.split(separator: 0x20, omittingEmptySubsequences: true)
        guard let verbBytes = fields.first else { return .failure(bad("empty request")) }
        let verb = String(decoding: verbBytes, as: UTF8.self).uppercased()
        let arguments = fields.dropFirst().map { String(decoding: $0, as: UTF8.self) }
        do {
            return .success(try request(verb: verb, arguments: arguments))
        } catch {
            return .failure(error)
        }
    }

    /// `GET <name>`, by far the most frequent request, parsed without
    /// splitting the line into strings. Anything else (another verb, a
    /// lowercase one, options, extra spaces, a bad name) returns nil and
    /// takes the general path, which answers it the same way.
    static func quickGet(_ line: Slice<UnsafeRawBufferPointer>) -> Request? {
        let start = line.startIndex
        guard line.count > 4, line[start] == 0x47, line[start + 1] == 0x45, line[start + 2] == 0x54, line[start + 3] == 0x20,
            let name = IdentityName(String(decoding: line[(start + 4)...], as: UTF8.self))
        else { return nil }
        return .get(name, minimumTTL: nil)
    }

    private static func request(verb: String, arguments: [String]) throws(ProtocolError) -> Request {
        switch verb {
        case "PING":
            try noArguments(verb, arguments)
            return .ping
        case "HELLO":
            try noArguments(verb, arguments)
            return .hello
        case "QUIT":
            try noArguments(verb, arguments)
            return .quit
        case "RELOAD":
            try noArguments(verb, arguments)
            return .reload
        case "STATS":
            try noArguments(verb, arguments)
            return .stats
        case "GET":
            let parsed = try Arguments(verb, arguments, positional: 1, allowed: ["min_ttl"])
            return .get(try parsed.identity(), minimumTTL: try parsed.integer("min_ttl", in: 0...maximumTTL))
        case "STATUS":
            let parsed = try Arguments(verb, arguments, positional: 1, allowed: [])
            return .status(try parsed.identity())
        case "WATCH":
            let parsed = try Arguments(verb, arguments, positional: 1, allowed: [])
            return .watch(try parsed.identity())
        case "REFRESH":
            let parsed = try Arguments(verb, arguments, positional: 1, allowed: [])
            return .refresh(try parsed.identity())
        case "REMOVE":
            let parsed = try Arguments(verb, arguments, positional: 1, allowed: ["logout"])
            let logout: Logout
            switch parsed.options["logout"] {
            case nil, "0": logout = .none
            case "1": logout = .session
            case "all": logout = .sharedSession
            default: throw bad("logout must be 0, 1 or all")
            }
            return .remove(try parsed.identity(), logout: logout)
        case "LIST":
            let parsed = try Arguments(verb, arguments, positional: 0, allowed: ["prefix", "after", "limit"])
            let after = try parsed.options["after"].map { text throws(ProtocolError) -> IdentityName in
                guard let name = IdentityName(text) else { throw bad("after= is not a valid identity name") }
                return name
            }
            return .list(
                prefix: parsed.options["prefix"], after: after,
                limit: try parsed.integer("limit", in: 1...maximumListLimit))
        case "ENROLL":
            return .enroll(try enroll(arguments))
        default:
            throw ProtocolError(.unknownVerb, "unknown verb \(verb.count > 32 ? String(verb.prefix(32)) + "..." : verb)")
        }
    }

    private static func enroll(_ arguments: [String]) throws(ProtocolError) -> EnrollRequest {
        let parsed = try Arguments(
            "ENROLL", arguments, positional: 1,
            allowed: ["provider", "grant", "refresh_token", "session_id", "access_token", "expires_in", "allow", "refresh_at", "from"])
        let name = try parsed.identity()
        guard let provider = parsed.options["provider"] else { throw bad("ENROLL needs provider=<name>") }
        var grant: GrantKind? = nil
        if let text = parsed.options["grant"] {
            guard let kind = GrantKind(rawValue: text) else {
                throw bad("grant must be refresh_token, client_credentials or session")
            }
            grant = kind
        }
        let expiresIn = try parsed.integer("expires_in", in: 1...maximumTTL)
        var allow: [String] = []
        if let rules = parsed.options["allow"] {
            allow = rules.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        var refreshAt: Double? = nil
        if let text = parsed.options["refresh_at"] {
            guard let fraction = Double(text) else { throw bad("refresh_at must be a fraction from 0.01 to 0.99") }
            refreshAt = fraction
        }
        var from: IdentityName? = nil
        if let text = parsed.options["from"] {
            guard let source = IdentityName(text) else { throw bad("from= is not a valid identity name") }
            guard source != name else { throw bad("from= names the identity itself") }
            guard parsed.options["refresh_token"] == nil, parsed.options["session_id"] == nil, grant == nil || grant == .session
            else { throw bad("from= takes the session of another identity: no refresh_token=, session_id= or other grant") }
            from = source
            grant = .session
        }
        let request = EnrollRequest(
            name: name, provider: provider, grant: grant, refreshToken: parsed.options["refresh_token"].map(Secret.init),
            sessionID: parsed.options["session_id"].map(Secret.init), accessToken: parsed.options["access_token"].map(Secret.init),
            expiresIn: expiresIn, allow: allow, refreshAt: refreshAt, from: from)
        do {
            try request.enrollment(now: Date()).validate()
        } catch {
            // A join has no session id of its own: it takes the source's.
            if !(request.from != nil && error.field == .sessionID) { throw bad(error.message) }
        }
        return request
    }

    private static func noArguments(_ verb: String, _ arguments: [String]) throws(ProtocolError) {
        guard arguments.isEmpty else { throw bad("\(verb) takes no arguments") }
    }

    static func bad(_ message: String) -> ProtocolError {
        ProtocolError(.badRequest, message)
    }

    /// Positional arguments, then `key=value` options.
    private struct Arguments {
        var positional: [String]
        var options: [String: String] = [:]
        let verb: String

        init(_ verb: String, _ arguments: [String], positional count: Int, allowed: Set<String>) throws(ProtocolError) {
            self.verb = verb
            guard arguments.count >= count else {
                throw bad("\(verb) needs \(count == 1 ? "an identity" : "\(count) arguments")")
            }
            positional = Array(arguments.prefix(count))
            for option in arguments.dropFirst(count) {
                // The key ends at the first '='; the value may hold more.
                guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                    throw bad("unexpected argument \"\(option.prefix(64))\" (options are key=value)")
                }
                let key = String(option[..<equals])
                let value = String(option[option.index(after: equals)...])
                guard allowed.contains(key) else { throw bad("\(verb) has no option \(key.prefix(64))") }
                guard !value.isEmpty else { throw bad("option \(key) has no value") }
                guard options.updateValue(value, forKey: key) == nil else { throw bad("option \(key) given twice") }
            }
        }

        func identity() throws(ProtocolError) -> IdentityName {
            guard let name = IdentityName(positional[0]) else {
                throw bad("invalid identity name (allowed: [A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})")
            }
            return name
        }

        func integer(_ key: String, in range: ClosedRange<Int>) throws(ProtocolError) -> Int? {
            guard let text = options[key] else { return nil }
            guard text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int(text), range.contains(value) else {
                throw bad("\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
    }
}
