import Foundation
import Testing
import TokendCache
import TokendCore

@Suite("One count of identities by state (STATS, systemd status, metrics)")
struct StateCountsTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func snapshot(
        _ name: String, expiresIn: Double? = 600, condition: TokenSnapshot.Condition = .active, failures: Int = 0,
        session: String? = nil
    ) -> TokenSnapshot {
        TokenSnapshot(
            name: IdentityName(name)!, provider: "p", allowRules: [], accessToken: expiresIn.map { _ in Secret("at-\(name)") },
            tokenType: "Bearer", issuedAt: now.addingTimeInterval(-60), expiresAt: expiresIn.map { now.addingTimeInterval($0) },
            condition: condition, refreshing: false, failures: failures, lastError: failures > 0 ? "transient" : nil,
            generation: 1, nextRefresh: nil, retryAt: nil, sessionGroup: session)
    }

    @Test func everyIdentityIsCountedOnceAndTheExtrasFollowTheTokens() {
        let counts = StateCounts(
            [
                snapshot("fresh-1", expiresIn: 600), snapshot("fresh-2", expiresIn: 30),
                snapshot("stale", expiresIn: 300, failures: 2), snapshot("expired", expiresIn: -5, failures: 1),
                snapshot("pending", expiresIn: nil), snapshot("dead", expiresIn: nil, condition: .reauthRequired),
                snapshot("broken", expiresIn: 900, condition: .corrupt),
            ], at: now)
        #expect(counts.total == 7)
        #expect(counts[.fresh] == 2)
        #expect(counts[.stale] == 1)
        #expect(counts[.expired] == 1)
        #expect(counts[.pending] == 1)
        #expect(counts[.reauthRequired] == 1)
        #expect(counts[.corrupt] == 1)
        #expect(counts[.refreshing] == 0)
        // A corrupt identity's token is never served; an expired one neither.
        #expect(counts.servable == 3)
        #expect(counts.failing == 2)
        #expect(counts.soonestExpiry == 30)
    }

    @Test func aSharedSessionIsActiveWhileAnyOfItsIdentitiesIs() {
        let counts = StateCounts(
            [
                snapshot("a", session: "s1"), snapshot("b", condition: .reauthRequired, session: "s1"),
                snapshot("c", condition: .reauthRequired, session: "s2"), snapshot("d"),
            ], at: now)
        #expect(counts.activeSessions == 1)
        #expect(counts.endedSessions == 1)
    }

    @Test func theStatusLineNamesStatesInAFixedOrder() {
        #expect(StateCounts([snapshot("a")], at: now).summary == "1 identity: 1 fresh")
        #expect(StateCounts([], at: now).summary == "0 identities")
        let many = (0..<40).map { snapshot("f\($0)") } + [snapshot("s", failures: 1), snapshot("r", condition: .reauthRequired)]
        #expect(StateCounts(many, at: now).summary == "42 identities: 40 fresh, 1 stale, 1 reauth_required")
    }
}
