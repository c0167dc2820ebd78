import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet

@Suite(
    "Fleet leases: one refresher per identity, times from the database clock, fenced commits",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetLeaseTests {
    @Test func aSecondHolderIsRefusedWhileTheFirstHoldsAndOneOfManyRacersWins() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let name = FleetFixture.name("alice")
        let first = try #require(try await vault.acquireLease(name: name, holder: "host-a", ttl: .seconds(60)))
        #expect(first.fence == 1)
        #expect(try await vault.acquireLease(name: name, holder: "host-b", ttl: .seconds(60)) == nil)
        // A renewal by the holder is a new grant: a new fence.
        let renewed = try #require(try await vault.acquireLease(name: name, holder: "host-a", ttl: .seconds(60)))
        #expect(renewed.fence == 2)
        // Released: the next holder gets it at once, with a higher fence.
        #expect(try await vault.releaseLease(renewed))
        #expect(try await vault.releaseLease(renewed) == false)
        let other = try #require(try await vault.acquireLease(name: name, holder: "host-b", ttl: .seconds(60)))
        #expect(other.fence == 3)

        // Twenty agents race for a free name: exactly one wins.
        let racers = try await withThrowingTaskGroup(of: Lease?.self) { group in
            for index in 0..<20 {
                group.addTask { try await vault.acquireLease(name: FleetFixture.name("bob"), holder: "host-\(index)", ttl: .seconds(60)) }
            }
            return try await group.reduce(into: [Lease]()) { if let lease = $1 { $0.append(lease) } }
        }
        #expect(racers.count == 1)
        #expect(try await vault.currentLease(of: FleetFixture.name("bob"))?.holder == racers.first?.holder)
    }

    @Test func anExpiredLeaseIsGrantedToAnotherHolderNoEarlierThanItsExpiry() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let name = FleetFixture.name("alice")
        let first = try #require(try await vault.acquireLease(name: name, holder: "host-a", ttl: .seconds(1)))
        let second = try await Self.acquireWhenFree(vault, name: name, holder: "host-b")
        #expect(second.fence == first.fence + 1)
        // Both times are the database's: the second grant (expiry - ttl)
        // began no earlier than the first one's expiry.
        #expect(second.expiresAt.addingTimeInterval(-1) >= first.expiresAt)
    }

    @Test func aHolderFencedOffByAnotherCannotCommitItsStaleResult() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        let name = FleetFixture.name("alice")
        // host-a takes the lease and "freezes" past its expiry; host-b takes over.
        let stale = try #require(try await vault.acquireLease(name: name, holder: "host-a", ttl: .seconds(1)))
        let current = try await Self.acquireWhenFree(vault, name: name, holder: "host-b")

        let fenced = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "stale"), lease: stale)
        }
        #expect(fenced.code == .generationConflict)
        #expect(fenced.message.contains("lease") && fenced.message.contains("host-a"))
        // Renewing keeps the fence: the holder's commit still goes through.
        let renewed = try #require(try await vault.renewLease(current, ttl: .seconds(120)))
        #expect(renewed.fence == current.fence && renewed.expiresAt > current.expiresAt)
        #expect(try await vault.renewLease(stale, ttl: .seconds(60)) == nil)
        #expect(try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "current"), lease: current) == 2)
        #expect(try await vault.identity(named: name)?.secrets.refreshToken?.exposedValue == "rt-current")

        // The holder's lease but an old generation: still refused.
        let conflict = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "again"), lease: current)
        }
        #expect(conflict.code == .generationConflict)
        // A lease for another identity cannot carry this one's result.
        let wrong = try #require(try await vault.acquireLease(name: FleetFixture.name("bob"), holder: "host-b", ttl: .seconds(60)))
        await #expect(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 2, token: "x"), lease: wrong)
        }
    }

    @Test func anExpiredLeaseNobodyTookStillCommitsUntilItIsGrantedAgain() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        let name = FleetFixture.name("alice")
        let lease = try #require(try await vault.acquireLease(name: name, holder: "host-a", ttl: .milliseconds(100)))
        // Wait, by the database clock, until it has expired; nobody takes it over.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let expired = try await fixture.sql {
                try await $0.query("SELECT expires_at <= clock_timestamp() FROM leases WHERE name = 'alice'", logger: FleetFixture.logger)
                    .decode(Bool.self).allElements()
            }
            if expired == [true] { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await vault.currentLease(of: name)?.fence == lease.fence)
        #expect(try await vault.renewLease(lease, ttl: .seconds(60)) == nil, "an expired lease is not renewed")
        // Nobody was granted it since: the late result holds the only copy
        // of the rotated token, and lands.
        #expect(try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "late"), lease: lease) == 2)
        #expect(try await vault.identity(named: name)?.secrets.refreshToken?.exposedValue == "rt-late")
        // Once another holder is granted the identity, the old grant no longer commits.
        let second = try #require(try await vault.acquireLease(name: name, holder: "host-b", ttl: .seconds(60)))
        let error = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 2, token: "later"), lease: lease)
        }
        #expect(error.code == .generationConflict)
        #expect(try await vault.commit(FleetFixture.refresh("alice", from: 2, token: "b"), lease: second) == 3)
    }

    /// Polls until `holder` is granted the lease (a hang guard of 60 s).
    static func acquireWhenFree(
        _ vault: PostgresVault, name: IdentityName, holder: String
    ) async throws -> Lease {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let lease = try await vault.acquireLease(name: name, holder: holder, ttl: .seconds(60)) { return lease }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the lease of \(name) was never granted to \(holder)")
        throw CancellationError()
    }
}
