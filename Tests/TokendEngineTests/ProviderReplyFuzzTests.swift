import Foundation
import Logging
import Synchronization
import Testing
import TokendCore
import TokendCache
import TokendEngine
import TokendLoopbackHTTP
import TokendProviders
import TokendTestKit
import TokendVault

/// Mutated token responses, over real HTTP, through the real OAuth2
/// provider (its HTTP client, body limits and JSON parsing), the provider
/// gate and the real engine with a real vault. Asserted: nothing crashes;
/// every token the engine would serve is a valid b64token, unexpired and
/// renders as exactly one reply line; no identity is refreshed faster than
/// the engine's minimum interval, whatever lifetimes the replies claim.
///
/// `TOKEND_FUZZ_REPLIES` sets the number of replies (CI: 100,000);
/// `TOKEND_FUZZ_SEED` replays a run.
@Suite("Provider reply fuzzing")
struct ProviderReplyFuzzTests {
    static let http = ProviderHTTP()

    @Test func mutatedRepliesNeverCrashLoopOrServeGarbage() async throws {
        let environment = ProcessInfo.processInfo.environment
        let total = environment["TOKEND_FUZZ_REPLIES"].flatMap(Int.init) ?? 100_000
        let seed = environment["TOKEND_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x70C3_0D
        let mutator = Mutex(ReplyMutator(seed: seed))
        let served = Atomic<Int>(0)
        let server = try await LoopbackHTTPServer.start { _ in
            served.wrappingAdd(1, ordering: .relaxed)
            return .respond(
                status: 200, headers: [("Content-Type", "application/json")], body: mutator.withLock { $0.next() })
        }
        defer { Task { await server.shutdown() } }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vault = try SQLiteVault.create(at: directory + "/vault.db", kek: try KeyEncryptionKey.generate(at: directory + "/vault.key"))
        defer { try? vault.close() }
        let provider = try OAuth2Provider(
            settings: OAuth2Settings(
                name: "fuzz", tokenEndpoint: server.baseURL + "/token", clientID: "c", clientSecret: Secret("s"),
                requestTimeout: .seconds(5), allowInsecureHTTP: true),
            http: Self.http)
        let identities = 64
        let names = (0..<identities).map { IdentityName("fuzz-\($0)")! }
        for name in names {
            try await vault.enroll(Enrollment(name: name, provider: "fuzz", refreshToken: Secret("rt-\(name)")))
        }
        let clock = ManualClock()
        var settings = EngineSettings()
        settings.minimumRefreshInterval = .seconds(2)
        settings.maxConcurrentRefreshes = 16
        settings.providerRate = 1_000_000
        settings.providerBurst = 1_000_000
        // Every refused reply is logged at info; a hundred thousand of them
        // would measure the terminal, not the agent.
        var quiet = Logger(label: "tokend.engine")
        quiet.logLevel = .critical
        let engine = RefreshEngine(
            vault: vault, providers: ["fuzz": provider], clock: clock, wallClock: clock.wallClock, settings: settings,
            logger: quiet)
        try await engine.start()
        let loop = Task { try? await engine.run() }
        defer { loop.cancel() }

        // Each round: every identity is asked for twice (a forced refresh and
        // a min_ttl one), then 2.01 s pass. The minimum interval allows one
        // provider call per identity per round (plus one at the very start).
        var rounds = 0
        var requests: [Task<Void, Never>] = []
        while served.load(ordering: .relaxed) < total {
            rounds += 1
            for name in names {
                requests.append(Task { _ = await engine.refresh(name, force: true) })
                requests.append(Task { _ = await engine.refresh(name, force: false, minimumTTL: 1e9, urgent: false) })
            }
            // Let every refresh the interval allows run, then let time pass;
            // the requests still waiting go on in the next round.
            try await Task.sleep(for: .milliseconds(2))
            while true {
                let statistics = await engine.currentStatistics
                if statistics.inFlight == 0 && statistics.queued == 0 { break }
                try await Task.sleep(for: .milliseconds(1))
            }
            clock.advance(by: .milliseconds(2010))
            // Older requests have had their turn; keep only the last rounds'.
            if requests.count > 8 * identities { requests.removeFirst(requests.count - 8 * identities) }
            let now = clock.wallClock()
            for name in names {
                guard let snapshot = engine.cache.snapshot(name), let token = snapshot.servableToken(at: now) else { continue }
                #expect(ProviderReplyGate.isB64Token(token.exposedValue, maximumLength: ProviderReplyGate.maximumAccessTokenLength))
                #expect(ProviderReplyGate.isTokenType(snapshot.tokenType))
                #expect((snapshot.expiresAt ?? .distantPast) > now)
            }
            let calls = served.load(ordering: .relaxed)
            #expect(calls <= identities * (rounds + 1), "\(calls) provider calls in \(rounds) rounds of \(identities) identities")
            if calls > identities * (rounds + 1) { break }
        }
        // The waiting requests finish once their interval has passed.
        for _ in 0..<3 {
            clock.advance(by: .milliseconds(2010))
            try await Task.sleep(for: .milliseconds(20))
        }
        for request in requests { request.cancel() }
        for request in requests { await request.value }
        loop.cancel()
        await loop.value
        // The agent still works: every identity is in a defined state, and
        // the vault opens every value it holds.
        #expect(engine.cache.count == identities)
        #expect(try await vault.verify().corrupt.isEmpty)
    }
}

/// Deterministic mutations of an RFC 6749 §5.1 token response: wrong types,
/// extreme numbers, hostile strings, missing fields, broken JSON, nesting.
struct ReplyMutator {
    private var state: UInt64
    private var counter = 0

    init(seed: UInt64) { state = seed == 0 ? 1 : seed }

    mutating func random(_ bound: Int) -> Int {
        // xorshift64*: small, fast, reproducible from the seed.
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return Int((state &* 2_685_821_657_736_338_717) % UInt64(bound))
    }

    static let numbers = [
        "1e308", "1.7976931348623157e308", "1e300", "-0", "0", "-1", "-1e308", "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "123456789012345678901234567890", "0.0001", "3600", "1e-320",
        "\"NaN\"", "\"Infinity\"", "\"-Infinity\"", "\"1e999\"", "\"3600\"", "\"\"", "\"0x10\"", "1e999", "true", "null",
        "[]", "{}",
    ]

    static let strings: [String] = [
        "\"tok\\nOK injected 999 Bearer\"", "\"tok en\"", "\"\"", "\"\\u0000\"", "\"t\\u00f6k\"", "\"\\r\\n\"",
        "\"\(String(repeating: "A", count: 20_000))\"", "\"eyJhbGciOiJub25lIn0.eyJleHAiOjF9.\"",
        "\"eyJhbGciOiJub25lIn0.eyJleHAiOjFlMzA4fQ.\"", "\"eyJhbGciOiJub25lIn0.eyJleHAiOiJOYU4ifQ.\"", "\"a==b\"",
        "\"\\ud800\"", "\"ok-token_1.2~3+4/5==\"", "1", "true", "null", "[\"a\"]", "{\"a\":1}",
    ]

    mutating func next() -> Data {
        counter += 1
        var fields: [String: String] = [
            "access_token": "\"at-\(counter)\"", "token_type": "\"Bearer\"", "expires_in": "3600",
            "refresh_token": "\"rt-\(counter)\"",
        ]
        switch random(12) {
        case 0: return Data(String(repeating: "[", count: 1 + random(200_000)).utf8)
        case 1: return Data("{\"access_token\": \"at\", \"expires_in\": 36".utf8)
        case 2: return Data((0..<random(512)).map { _ in UInt8(random(256)) })
        case 3: return Data("[1, 2, 3]".utf8)
        default: break
        }
        let keys = ["access_token", "token_type", "expires_in", "refresh_token", "session_id", "scope"]
        for _ in 0...random(3) {
            let key = keys[random(keys.count)]
            switch random(4) {
            case 0: fields[key] = nil
            case 1: fields[key] = Self.numbers[random(Self.numbers.count)]
            case 2: fields[key] = Self.strings[random(Self.strings.count)]
            default: fields[key] = String(repeating: "{\"a\":", count: 64) + "1" + String(repeating: "}", count: 64)
            }
        }
        if random(10) == 0 { fields["expires_in"] = ["0", "-5", "0.001"][random(3)] }
        let body = "{" + fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
        return Data(body.utf8)
    }
}
