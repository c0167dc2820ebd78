import Foundation
import Logging
import Synchronization
import Testing
import TokendCache
import TokendCore
import TokendEngine
import TokendFleet
import TokendTestKit

/// Review findings on the fleet engine, written as tests that fail while
/// the flaw is there (exclusion: no refresh token sent twice).
@Suite(
    "Fleet review: a refresh token the provider already rotated never goes to it again",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetReviewTests {
    typealias Agent = FleetEngineTests.Agent

    /// Agent A's provider answered, but its commit fails and from then on
    /// A cannot reach the store except for the release that follows (a
    /// connection reset mid-commit; the pool's next connection works once).
    /// A holds the only copy of the rotated token; agent B must not get the
    /// identity's claim and send the refresh token A already spent.
    @Test func aHeldResultsLeaseIsNotReleasedToAnAgentHoldingTheSpentToken() async throws {
        try await Self.heldResultScenario(releases: true)
    }

    static func heldResultScenario(releases: Bool) async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await FleetEngineTests.enroll(fixture, "alice")
        let name = FleetFixture.name("alice")
        let failing = FailingCommits(releases: releases)
        failing.fail(true)
        // Released: a lease long enough that only the release can end it.
        let lease: Duration = releases ? .seconds(30) : .seconds(1)
        let a = try await Agent(fixture, holder: "agent-a", lease: lease) { failing.wrapping($0) }
        let b = try await Agent(fixture, holder: "agent-b")
        _ = await a.engine.refresh(name, force: true)
        #expect(a.provider.requests == [.refreshToken(Secret("rt-first-alice"))])
        // A now holds the provider's answer (rt-p-1) and nothing else does.
        let asked = Task { await b.engine.refresh(name, force: true) }
        _ = await eventually(timeout: .seconds(5)) { b.provider.callCount > 0 }
        #expect(
            !b.provider.requests.contains(.refreshToken(Secret("rt-first-alice"))),
            "agent B sent the refresh token agent A already spent: the provider revokes the family")
        failing.fail(false)
        _ = await asked.value
        await a.stop()
        await b.stop()
    }

    /// A reload that enrolls a declared identity claims it with the agent's
    /// own holder name: the store grants a second, newer fence to the same
    /// holder, which fences off this agent's own refresh of the identity
    /// already in flight; its result (the rotated refresh token) is lost.
    @Test func aDeclaredEnrollmentDoesNotFenceOffTheAgentsOwnRefreshInFlight() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        let name = FleetFixture.name("alice")
        let a = try await Agent(fixture, holder: "agent-a")
        // Enrolled on another host: A follows it.
        try await FleetEngineTests.enroll(fixture, "alice")
        #expect(await eventually { a.token("alice") == "at-first-alice" })
        // A refreshes it; its provider holds the answer, so A holds the claim.
        a.provider.hold()
        let refreshing = Task { await a.engine.refresh(name, force: true) }
        #expect(await eventually { a.provider.callCount == 1 })
        // A reload declares the same identity: its claim must wait for A's
        // own refresh, not take a newer fence from under it.
        let declaring = Task {
            try await a.engine.declare([
                Enrollment(name: name, provider: "p", refreshToken: Secret("rt-declared"), fromConfiguration: true)
            ])
        }
        a.provider.release()
        _ = await refreshing.value
        _ = try await declaring.value
        #expect(await eventually {
            (try? await admin.identity(named: name))?.record.generation == 2
        }, "agent A's own refresh was fenced off by its reload: the store keeps the spent refresh token")
        let stored = try #require(try await admin.identity(named: name))
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        await a.stop()
    }
}

extension FleetReviewTests {
    /// Identity names may contain `/` (`team/billing`, docs/PROTOCOL.md):
    /// the held result must still be kept on disk and come back.
    @Test func aResultForANameWithASlashIsKeptOnDiskAndComesBack() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let spool = try HeldResultSpool(directory: fixture.directory + "/held", vault: vault)
        let result = HeldResultSpoolTests.result("team/billing")
        #expect(throws: Never.self) { try spool.keep(result) }
        #expect(spool.load() == [result])
    }
}

extension FleetReviewTests {
    /// The agent is cut off from the database (renewals stall) past its
    /// lease while the provider answers; nobody else claims the identity.
    /// Its result is the only copy of the rotated refresh token and no
    /// other grant (fence) happened since: it must be committed, not
    /// dropped (dropping it leaves the spent token in the store).
    @Test func aResultWhoseLeaseExpiredButWasNotTakenOverIsCommitted() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await FleetEngineTests.enroll(fixture, "alice")
        let name = FleetFixture.name("alice")
        let stalled = StalledRenewals()
        // A lease long enough for a loaded machine to reach the provider call
        // (no call starts once the lease may have run out).
        let agent = try await Agent(fixture, holder: "agent-cut", lease: .seconds(6)) { stalled.wrapping($0) }
        stalled.stall()
        agent.provider.hold()
        let refreshing = Task { await agent.engine.refresh(name, force: true) }
        #expect(await eventually { agent.provider.callCount == 1 })
        // Past the lease, by the database's clock.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let expired = try await fixture.sql {
                try await $0.query("SELECT expires_at <= clock_timestamp() FROM leases WHERE name = 'alice'", logger: FleetFixture.logger)
                    .decode(Bool.self).allElements()
            }
            if expired == [true] { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let lease = try #require(try await admin.currentLease(of: name))
        #expect(lease.holder == "agent-cut")  // expired, not taken over
        stalled.resume()
        agent.provider.release()
        _ = await refreshing.value
        let stored = try #require(try await admin.identity(named: name))
        #expect(stored.record.generation == 2, "the only copy of the rotated refresh token was dropped")
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        await agent.stop()
    }
}

extension FleetReviewTests {
    /// Hosts of a fleet are reconfigured one by one (a rolling update): a
    /// host still on the old configuration removes from the shared store a
    /// declared identity the new configuration added, and the next sync of
    /// a host with the new one enrolls again the refresh token of the
    /// configuration, which the first refresh already spent.
    @Test func aHostOnAnOlderConfigurationDoesNotMakeTheFleetResendASpentDeclaredToken() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        let name = FleetFixture.name("declared")
        let declared = Enrollment(name: name, provider: "p", refreshToken: Secret("rt-declared"), fromConfiguration: true)
        let a = try await Agent(fixture, holder: "agent-new-config")
        let b = try await Agent(fixture, holder: "agent-old-config")
        try await a.engine.declare([declared])
        _ = await a.engine.refresh(name, force: true)
        #expect(await eventually { (try? await admin.identity(named: name))?.record.generation == 2 })
        // Host B reloads its (older) configuration, which lacks the identity.
        try await b.engine.declare([])
        #expect(try await admin.identity(named: name) != nil, "a host's configuration does not remove from the fleet store")
        // Host A reloads its configuration (unchanged) and refreshes.
        try await a.engine.declare([declared])
        _ = await a.engine.refresh(name, force: true)
        let sent = (a.provider.requests + b.provider.requests).filter { $0 == .refreshToken(Secret("rt-declared")) }
        #expect(sent.count == 1, "the declared refresh token was sent to the provider \(sent.count) times")
        await a.stop()
        await b.stop()
    }
}

extension FleetReviewTests {
    /// Agent A is frozen (SIGSTOP, a VM pause, a stalled DB reply) right
    /// after its claim was granted, past its lease; host B takes the lease
    /// over and is mid-refresh with the same refresh token. When A resumes,
    /// the store still holds generation 1 (B has not committed), so A must
    /// notice its lease is gone before the refresh token leaves the host.
    @Test func anAgentFrozenBetweenItsClaimAndTheProviderCallDoesNotSendTheToken() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await FleetEngineTests.enroll(fixture, "alice")
        let name = FleetFixture.name("alice")
        let frozen = FrozenClaims()
        let a = try await Agent(fixture, holder: "agent-a", lease: .seconds(1)) { frozen.wrapping($0) }
        frozen.freeze()
        let refreshing = Task { await a.engine.refresh(name, force: true) }
        #expect(await eventually { frozen.granted })
        // A's lease runs out while it is frozen; B takes it and is calling
        // the provider with rt-first-alice.
        var takeover: Lease?
        let deadline = ContinuousClock.now + .seconds(10)
        while takeover == nil, ContinuousClock.now < deadline {
            takeover = try await admin.acquireLease(name: name, holder: "host-b", ttl: .seconds(60))
            if takeover == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        _ = try #require(takeover)
        frozen.thaw()
        _ = await refreshing.value
        #expect(
            a.provider.callCount == 0,
            "agent A sent rt-first-alice after its lease had passed to host B, which is sending it too")
        await a.stop()
    }
}

/// The real fleet claims, with a pause after a granted claim while told.
final class FrozenClaims: Sendable {
    private let state = Mutex((frozen: false, granted: false))

    func freeze() { state.withLock { $0.frozen = true } }
    func thaw() { state.withLock { $0.frozen = false } }
    var granted: Bool { state.withLock { $0.granted } }

    func wrapping(_ exclusion: FleetExclusion) -> any RefreshExclusion {
        Wrapped(real: exclusion, owner: self)
    }

    private struct Wrapped: RefreshExclusion {
        let real: FleetExclusion
        let owner: FrozenClaims

        func claim(_ name: IdentityName, forEnrollment: Bool) async throws -> RefreshClaim {
            let claim = try await real.claim(name, forEnrollment: forEnrollment)
            if case .granted = claim { owner.state.withLock { $0.granted = true } }
            while owner.state.withLock({ $0.frozen }) { try await Task.sleep(for: .milliseconds(10)) }
            return claim
        }
        func commit(_ result: RefreshCommit, under lease: Lease) async throws -> Int64? {
            try await real.commit(result, under: lease)
        }
        func release(_ lease: Lease) async { await real.release(lease) }
        var renewalInterval: Duration { real.renewalInterval }
        var leaseLifetime: Duration { real.leaseLifetime }
        func renew(_ lease: Lease) async throws -> Lease? { try await real.renew(lease) }
    }
}

/// The real fleet claims; while told to fail, commits fail and, after
/// the first failed commit, so do claims and renewals (and releases, unless
/// `releases`): an agent cut off from the store mid-refresh.
final class FailingCommits: Sendable {
    private let state = Mutex((failing: false, cut: false))
    let releases: Bool

    init(releases: Bool) { self.releases = releases }

    func fail(_ value: Bool) { state.withLock { $0 = (value, value && $0.cut) } }

    func wrapping(_ exclusion: FleetExclusion) -> any RefreshExclusion {
        Wrapped(real: exclusion, owner: self)
    }

    private struct Wrapped: RefreshExclusion {
        let real: FleetExclusion
        let owner: FailingCommits

        var cut: Bool { owner.state.withLock { $0.failing && $0.cut } }

        func claim(_ name: IdentityName, forEnrollment: Bool) async throws -> RefreshClaim {
            if cut { throw VaultError(.storage, "the store is unreachable") }
            return try await real.claim(name, forEnrollment: forEnrollment)
        }
        func commit(_ result: RefreshCommit, under lease: Lease) async throws -> Int64? {
            let failing = owner.state.withLock { state in
                if state.failing { state.cut = true }
                return state.failing
            }
            if failing { throw VaultError(.storage, "the commit's connection was reset") }
            return try await real.commit(result, under: lease)
        }
        func release(_ lease: Lease) async {
            if cut && !owner.releases { return }
            await real.release(lease)
        }
        var renewalInterval: Duration { real.renewalInterval }
        var leaseLifetime: Duration { real.leaseLifetime }
        func renew(_ lease: Lease) async throws -> Lease? {
            if cut { throw VaultError(.storage, "the store is unreachable") }
            return try await real.renew(lease)
        }
    }
}
