import Foundation
import Testing
import TokendCache
import TokendCore
@testable import TokendEngine

@Suite("An engine entry the cache holds is never changed: the engine changes a copy")
struct EngineEntrySharingTests {
    func identity(_ name: String, token: String) -> StoredIdentity {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        return StoredIdentity(
            record: IdentityRecord(
                name: IdentityName(name)!, provider: "p", grant: .refreshToken, state: .fresh, createdAt: now,
                updatedAt: now, issuedAt: now, expiresAt: now.addingTimeInterval(3600), tokenType: "Bearer"),
            secrets: IdentitySecrets(refreshToken: Secret("rt-\(name)"), accessToken: Secret(token)))
    }

    @Test func changesAfterPublishingReachTheCacheOnlyWhenPublishedAgain() throws {
        let cache = TokenCache()
        let stored = identity("a", token: "at-1")
        var entry = EngineEntry(record: stored.record, secrets: stored.secrets)
        cache.publish(entry.published)
        let published = try #require(cache.snapshot(IdentityName("a")!))
        #expect(published.accessToken?.exposedValue == "at-1")

        // Every kind of field: in place, behind the rare box, in the
        // compact secrets.
        entry.failures = 3
        entry.phase = .inFlight
        entry.nextRefresh = Date(timeIntervalSince1970: 1)
        entry.lastErrorCode = "transient"
        entry.retryAt = Date(timeIntervalSince1970: 2)
        entry.secrets.accessToken = Secret("at-2")
        entry.secrets.sessionID = Secret("sid")
        entry.record.generation = 9
        #expect(cache.snapshot(IdentityName("a")!) == published)

        cache.publish(entry.published)
        let republished = try #require(cache.snapshot(IdentityName("a")!))
        #expect(republished.accessToken?.exposedValue == "at-2")
        #expect(republished.failures == 3)
        #expect(republished.refreshing)
        #expect(republished.lastError == "transient")
        #expect(republished.retryAt == Date(timeIntervalSince1970: 2))
        #expect(republished.nextRefresh == Date(timeIntervalSince1970: 1))
        #expect(republished.generation == 9)
        #expect(entry.secrets.sessionID?.exposedValue == "sid")
        #expect(entry.secrets.refreshToken?.exposedValue == "rt-a")
    }

    @Test func rareFieldsGoBackToNothingWhenCleared() {
        let stored = identity("b", token: "at")
        var entry = EngineEntry(record: stored.record, secrets: stored.secrets)
        entry.lastErrorCode = "transient"
        entry.recovering = true
        #expect(entry.lastErrorCode == "transient" && entry.recovering)
        entry.lastErrorCode = nil
        entry.recovering = false
        #expect(entry.lastErrorCode == nil && !entry.recovering && entry.waiters.isEmpty && entry.retryAt == nil)
        #expect(entry.snapshot.lastError == nil)
    }
}
