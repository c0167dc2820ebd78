import Foundation
import Testing
import TokendCore
@testable import TokendProtocol

@Suite("Protocol v1 request parsing")
struct RequestParserTests {
    func parse(_ line: String) -> Result<Request, ProtocolError> {
        RequestParser.parse(Array(line.utf8))
    }

    static let billing = IdentityName("billing-worker")!

    @Test(arguments: [
        ("PING", Request.ping),
        ("ping", .ping),
        ("HeLLo", .hello),
        ("PING\r", .ping),
        ("  PING  ", .ping),
        ("GET billing-worker", .get(billing, minimumTTL: nil)),
        ("get   billing-worker   min_ttl=300", .get(billing, minimumTTL: 300)),
        ("GET billing-worker min_ttl=0\r", .get(billing, minimumTTL: 0)),
        ("STATUS billing-worker", .status(billing)),
        ("WATCH billing-worker", .watch(billing)),
        ("QUIT", .quit),
        ("LIST", .list(prefix: nil, after: nil, limit: nil)),
        ("LIST prefix=user: after=user:1@x limit=50", .list(prefix: "user:", after: IdentityName("user:1@x"), limit: 50)),
        ("REFRESH billing-worker", .refresh(billing)),
        ("REMOVE billing-worker", .remove(billing, logout: .none)),
        ("REMOVE billing-worker logout=1", .remove(billing, logout: .session)),
        ("REMOVE billing-worker logout=all", .remove(billing, logout: .sharedSession)),
        ("ENROLL app2 provider=p2 from=billing-worker", .enroll(EnrollRequest(
            name: IdentityName("app2")!, provider: "p2", grant: .session, from: billing))),
        ("RELOAD", .reload),
        ("STATS", .stats),
    ])
    func validLines(line: String, expected: Request) throws {
        #expect(try parse(line).get() == expected)
    }

    @Test func enrollCarriesSecretsAndOptions() throws {
        let request = try parse(
            "ENROLL user:42@tx provider=transmit refresh_token=rt/a+b== session_id=s=1 access_token=at expires_in=300 allow=uid:1001,group:ops refresh_at=0.5"
        ).get()
        guard case .enroll(let enroll) = request else {
            Issue.record("not an enroll: \(request)")
            return
        }
        #expect(enroll.name.rawValue == "user:42@tx")
        #expect(enroll.provider == "transmit")
        #expect(enroll.refreshToken?.exposedValue == "rt/a+b==", "a value may itself contain '='")
        #expect(enroll.sessionID?.exposedValue == "s=1")
        #expect(enroll.accessToken?.exposedValue == "at")
        #expect(enroll.expiresIn == 300)
        #expect(enroll.allow == ["uid:1001", "group:ops"])
        #expect(enroll.refreshAt == 0.5)
        #expect(enroll.grant == nil, "inferred later: refresh_token, since one is given")
    }

    @Test(arguments: [
        ("", ErrorCode.badRequest),
        ("   ", .badRequest),
        ("FETCH x", .unknownVerb),
        ("GET", .badRequest),
        ("GET -bad", .badRequest),
        ("GET has\ttab", .badRequest),
        ("GET a b", .badRequest),
        ("GET a min_ttl=-1", .badRequest),
        ("GET a min_ttl=abc", .badRequest),
        ("GET a min_ttl=", .badRequest),
        ("GET a =5", .badRequest),
        ("GET a min_ttl=1 min_ttl=2", .badRequest),
        ("GET a colour=blue", .badRequest),
        ("PING extra", .badRequest),
        ("LIST limit=0", .badRequest),
        ("LIST limit=1001", .badRequest),
        ("LIST after=-x", .badRequest),
        ("REMOVE a logout=2", .badRequest),
        ("ENROLL a provider=p from=a", .badRequest),
        ("ENROLL a provider=p from=b session_id=s", .badRequest),
        ("ENROLL a provider=p from=b grant=refresh_token refresh_token=x", .badRequest),
        ("ENROLL a provider=p from=-b", .badRequest),
        ("ENROLL a", .badRequest),
        ("ENROLL a provider=p grant=password", .badRequest),
        ("ENROLL a provider=p grant=session", .badRequest),
        ("ENROLL a provider=p access_token=x", .badRequest),
        ("ENROLL a provider=p allow=uid:abc", .badRequest),
        ("ENROLL a provider=p allow=uid:1,,gid:2", .badRequest),
        ("ENROLL a provider=p refresh_at=1.5", .badRequest),
        ("GET " + String(repeating: "x", count: 129), .badRequest),
    ])
    func invalidLines(line: String, code: ErrorCode) {
        guard case .failure(let error) = parse(line) else {
            Issue.record("accepted \(line)")
            return
        }
        #expect(error.code == code)
    }

    @Test func nulAndInvalidUTF8AreRejected() {
        #expect(throws: ProtocolError.self) { try RequestParser.parse([0x47, 0x45, 0x54, 0x20, 0x61, 0x00]).get() }
        #expect(throws: ProtocolError.self) { try RequestParser.parse([0x47, 0x45, 0x54, 0x20, 0xC3, 0x28]).get() }
        #expect(throws: ProtocolError.self) { try RequestParser.parse([0xFF, 0xFE]).get() }
    }

    @Test func errorMessagesNeverEchoSecrets() {
        guard case .failure(let error) = parse("ENROLL a provider=p refresh_token=SECRET-RT grant=bogus") else {
            Issue.record("accepted")
            return
        }
        #expect(!error.message.contains("SECRET-RT"))
    }

    @Test func repliesRenderAsOneLine() {
        #expect(Reply.ok(["PONG"]).line == "OK PONG\n")
        #expect(Reply.error(.unavailable, "no token\nnow", fields: ["retry_after=5"]).line == "ERR unavailable no token now retry_after=5\n")
        #expect(Reply.error(.forbidden, "").line == "ERR forbidden -\n")
    }

    /// `GET <name>` has a quick path; `get <name>` (lowercase) never takes
    /// it. Over random names, valid or not, both must answer the same.
    @Test func theQuickGetPathAnswersAsTheGeneralOne() {
        var generator = SeededGenerator(seed: 0x6765_7421)
        let alphabet: [UInt8] = Array("abcXYZ019._:@/- =\r\t".utf8) + [0, 0xC3, 0xA9, 0xFF, 0x7F]
        var quick = 0
        for round in 0..<20_000 {
            var suffix: [UInt8] = round == 0 ? Array("billing-worker".utf8) : []
            for _ in 0..<Int.random(in: 0...(round % 50 == 0 ? 200 : 12), using: &generator) {
                suffix.append(alphabet.randomElement(using: &generator)!)
            }
            let upper = RequestParser.parse(Array("GET ".utf8) + suffix)
            let lower = RequestParser.parse(Array("get ".utf8) + suffix)
            switch (upper, lower) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "\(suffix)")
            case (.failure(let a), .failure(let b)):
                #expect(a.code == b.code && a.message == b.message, "\(suffix)")
            default:
                Issue.record("GET and get disagree on \(suffix): \(upper) vs \(lower)")
            }
            if (Array("GET ".utf8) + suffix).withUnsafeBytes({ RequestParser.quickGet($0[...]) }) != nil { quick += 1 }
        }
        // Both paths were compared, not only the general one.
        #expect(quick > 1_000)
    }

    /// A seeded random fuzzer: the parser never crashes, and whatever it
    /// accepts is within the grammar, checked here independently of the
    /// parser's own types. `TOKEND_FUZZ_LINES` sets the count (CI: 1,000,000;
    /// `scripts/fuzz.sh` runs 10,000,000), `TOKEND_FUZZ_SEED` replays a run.
    @Test func fuzzedLinesNeverCrashOrSlipThrough() {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["TOKEND_FUZZ_LINES"].flatMap(Int.init) ?? 1_000_000
        var generator = SeededGenerator(seed: environment["TOKEND_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x7043_6E64)
        let alphabet: [UInt8] = Array("GETSTATUSLISTWATCHENROLLREMOVEping get a-b.c:d@e/f = _ \r\t\0,0123456789".utf8) + [0xC3, 0xFF, 0x80]
        let verbs = ["GET ", "STATUS ", "LIST ", "WATCH ", "ENROLL ", "REMOVE ", "REFRESH ", "PING", ""]
        var accepted = 0
        for _ in 0..<count {
            var bytes = Array(verbs.randomElement(using: &generator)!.utf8)
            for _ in 0..<Int.random(in: 0...40, using: &generator) {
                bytes.append(alphabet.randomElement(using: &generator)!)
            }
            switch RequestParser.parse(bytes) {
            case .success(let request):
                accepted += 1
                // A `\r` before the (stripped) `\n` is ignored by design.
                let line = bytes.last == 13 ? bytes.dropLast() : bytes[...]
                let fields = line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
                if bytes.contains(0) || String(validating: bytes, as: UTF8.self) == nil {
                    Issue.record("accepted a line with NUL or invalid UTF-8: \(bytes)")
                }
                if let name = request.identity, !(Self.isIdentityName(name.rawValue) && fields.contains(name.rawValue)) {
                    Issue.record("accepted identity \(name.rawValue.debugDescription) from \(bytes)")
                }
            case .failure(let error):
                if ![.badRequest, .unknownVerb].contains(error.code) { Issue.record("unexpected \(error.code) for \(bytes)") }
            }
        }
        // The generator reaches the accepting paths too, or the test says little.
        #expect(accepted > count / 100)
    }

    /// `[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}`, written out by hand.
    static func isIdentityName(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...128).contains(bytes.count) else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool {
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
        }
        return alphanumeric(bytes[0]) && bytes.dropFirst().allSatisfy { alphanumeric($0) || Array("._:@/-".utf8).contains($0) }
    }
}

/// xorshift64*: deterministic, so a failing fuzz case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 1 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
