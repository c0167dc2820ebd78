import Foundation
import Testing
import TokendCache
import TokendCore

/// A seeded generator (SplitMix64), so a failing sequence can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("The cache's counts by state, kept as snapshots change")
struct StateTallyTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    func randomSnapshot(_ name: String, around now: Date, _ random: inout SeededGenerator) -> TokenSnapshot {
        let hasToken = Int.random(in: 0..<5, using: &random) > 0
        // Expiries cluster near `now`, and repeat, so ties and tokens that
        // expire while the test's clock moves are common.
        let expiresAt = Int.random(in: 0..<6, using: &random) == 0
            ? nil : now.addingTimeInterval(Double(Int.random(in: -3...12, using: &random)) * 10)
        let conditions: [TokenSnapshot.Condition] = [.active, .active, .active, .reauthRequired, .corrupt]
        return TokenSnapshot(
            name: IdentityName(name)!, provider: "p",
            allowRules: Bool.random(using: &random) ? ["unit:a.service"] : [],
            accessToken: hasToken ? Secret("at-\(name)") : nil, tokenType: "Bearer", issuedAt: now, expiresAt: expiresAt,
            condition: conditions.randomElement(using: &random)!, refreshing: Int.random(in: 0..<4, using: &random) == 0,
            failures: Int.random(in: 0..<3, using: &random), lastError: nil, generation: 1, nextRefresh: nil, retryAt: nil,
            sessionGroup: ["s1", "s2", nil, nil].randomElement(using: &random)!)
    }

    @Test(arguments: [1, 2, 3, 4, 5])
    func theKeptCountsEqualAFullCountAfterEveryChange(seed: UInt64) {
        var random = SeededGenerator(state: seed)
        let cache = TokenCache()
        let names = (0..<40).map { "id-\($0)" }
        var now = start
        for step in 0..<3000 {
            let name = names.randomElement(using: &random)!
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5: cache.update(randomSnapshot(name, around: now, &random))
            case 5..<7:
                let refreshing = Bool.random(using: &random)
                let failures = Int.random(in: 0..<2, using: &random)
                let expiresAt = now.addingTimeInterval(Double(Int.random(in: -2...8, using: &random)) * 10)
                cache.modify(IdentityName(name)!) {
                    $0.refreshing = refreshing
                    $0.failures = failures
                    $0.expiresAt = expiresAt
                }
            case 7: cache.remove(IdentityName(name)!)
            case 8: now = now.addingTimeInterval(Double(Int.random(in: 0...25, using: &random)))
            default:
                // Now and then the wall clock steps back.
                if Int.random(in: 0..<20, using: &random) == 0 { now = now.addingTimeInterval(-60) }
            }
            let kept = cache.counts(at: now)
            let full = StateCounts(cache.all(), at: now)
            #expect(kept == full, "seed \(seed), step \(step): \(kept) is not \(full)")
            if kept != full { return }
        }
    }

    @Test func aTokenCountedFreshIsCountedExpiredOnceItsTimePasses() {
        let cache = TokenCache()
        func snapshot(_ name: String, expiresIn: Double, failures: Int = 0) -> TokenSnapshot {
            TokenSnapshot(
                name: IdentityName(name)!, provider: "p", allowRules: [], accessToken: Secret("at"), tokenType: "Bearer",
                issuedAt: start, expiresAt: start.addingTimeInterval(expiresIn), condition: .active, refreshing: false,
                failures: failures, lastError: nil, generation: 1, nextRefresh: nil, retryAt: nil)
        }
        cache.update(snapshot("a", expiresIn: 60))
        cache.update(snapshot("b", expiresIn: 120, failures: 1))
        #expect(cache.counts(at: start).summary == "2 identities: 1 fresh, 1 stale")
        #expect(cache.counts(at: start).soonestExpiry == 60)
        #expect(cache.counts(at: start.addingTimeInterval(60)).summary == "2 identities: 1 stale, 1 expired")
        #expect(cache.counts(at: start.addingTimeInterval(60)).soonestExpiry == 60)
        #expect(cache.counts(at: start.addingTimeInterval(120)).servable == 0)
        #expect(cache.counts(at: start.addingTimeInterval(120)).soonestExpiry == nil)
        // A refresh lands: fresh again, at the clock the counts last saw.
        cache.update(snapshot("a", expiresIn: 600))
        #expect(cache.counts(at: start.addingTimeInterval(120)).summary == "2 identities: 1 fresh, 1 expired")
        // The wall clock steps back: everything is counted again at that time.
        #expect(cache.counts(at: start).summary == "2 identities: 1 fresh, 1 stale")
    }
}
