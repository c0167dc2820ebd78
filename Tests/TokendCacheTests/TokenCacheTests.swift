import Foundation
import Testing
import TokendCache
import TokendCore

@Suite("Token cache")
struct TokenCacheTests {
    func snapshot(_ name: String, allow: [String]) -> TokenSnapshot {
        TokenSnapshot(
            name: IdentityName(name)!, provider: "p", allowRules: allow, accessToken: nil, tokenType: "Bearer",
            issuedAt: nil, expiresAt: nil, condition: .active, refreshing: false, failures: 0, lastError: nil,
            generation: 1, nextRefresh: nil, retryAt: nil)
    }

    /// The server reads a peer's process from /proc only while this is true.
    @Test func unitRulesAreCountedThroughEveryChange() {
        let cache = TokenCache()
        cache.update(snapshot("a", allow: ["uid:1"]))
        #expect(!cache.usesUnitRules)
        cache.update(snapshot("b", allow: ["uid:1", "unit:billing.service"]))
        cache.update(snapshot("c", allow: ["unit:other.service"]))
        #expect(cache.usesUnitRules)
        // Replaced without the rule, then removed: none left.
        cache.update(snapshot("b", allow: ["uid:1"]))
        #expect(cache.usesUnitRules)
        cache.modify(IdentityName("c")!) { $0.allowRules = ["gid:5"] }
        #expect(!cache.usesUnitRules)
        cache.modify(IdentityName("a")!) { $0.allowRules = ["unit:a.service"] }
        #expect(cache.usesUnitRules)
        cache.remove(IdentityName("a")!)
        #expect(!cache.usesUnitRules)
        cache.remove(IdentityName("ghost")!)
        #expect(!cache.usesUnitRules)
    }
}
