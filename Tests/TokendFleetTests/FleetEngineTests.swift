import Foundation
import Logging
import Synchronization
import Testing
import TokendCache
import TokendCore
import TokendEngine
import TokendFleet
import TokendTestKit

/// The refresh engine on a fleet store: claims before refreshes, fenced
/// commits, and followers that serve what another agent committed. Each
/// "agent" here is an engine with its own connection pool, listener and
/// provider, as on separate hosts.
@Suite(
    "Fleet engine: one refresher per identity across agents, followers served from the store",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetEngineTests {
    /// One agent: its own store connection, engine, provider and listener.
    final class Agent: Sendable {
        let vault: PostgresVault
        let engine: RefreshEngine<ContinuousClock>
        let provider: ScriptedProvider
        let loop: Task<Void, Never>
        let listener: Task<Void, Never>

        init(
            _ fixture: FleetFixture, holder: String, lease: Duration = .seconds(30),
            exclusion: ((FleetExclusion) -> any RefreshExclusion)? = nil
        ) async throws {
            vault = try await fixture.open()
            provider = ScriptedProvider(name: "p")
            let fleet = FleetExclusion(vault: vault, holder: holder, ttl: lease)
            engine = RefreshEngine(
                vault: vault, exclusion: exclusion?(fleet) ?? fleet,
                providers: ["p": provider], clock: ContinuousClock(), logger: Logger(label: "test.\(holder)"))
            try await engine.start()
            let engine = engine
            loop = Task { try? await engine.run() }
            listener = Task { await FleetListener(settings: fixture.settings()).follow(engine) }
        }

        func token(_ name: String) -> String? { engine.cache.snapshot(FleetFixture.name(name))?.accessToken?.exposedValue }

        func stop() async {
            listener.cancel()
            loop.cancel()
            await loop.value
            await listener.value
            await vault.close()
        }
    }

    static func enroll(_ fixture: FleetFixture, _ name: String) async throws {
        let vault = try await fixture.open()
        try await vault.enroll(Enrollment(
            name: FleetFixture.name(name), provider: "p", refreshToken: Secret("rt-first-\(name)"),
            accessToken: Secret("at-first-\(name)"), accessTokenExpiresAt: Date().addingTimeInterval(3600)))
        await vault.close()
    }

    @Test func twoAgentsAskedToRefreshAtOnceCallTheProviderOnceAndServeTheSameToken() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        _ = try await fixture.create()
        try await Self.enroll(fixture, "alice")
        let a = try await Agent(fixture, holder: "agent-a")
        let b = try await Agent(fixture, holder: "agent-b")
        // Both providers answer slowly, so the two claims overlap.
        a.provider.setDelay(.milliseconds(300))
        b.provider.setDelay(.milliseconds(300))
        async let first = a.engine.refresh(FleetFixture.name("alice"), force: true)
        async let second = b.engine.refresh(FleetFixture.name("alice"), force: true)
        _ = await (first, second)
        #expect(a.provider.callCount + b.provider.callCount == 1)
        #expect(await eventually { a.token("alice") == "at-p-1" && b.token("alice") == "at-p-1" })
        // The refresh token the provider rotated is the store's, once.
        let stored = try #require(try await fixture.open().identity(named: FleetFixture.name("alice")))
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        #expect(stored.record.generation == 2)
        await a.stop()
        await b.stop()
    }

    @Test func aFollowerNeverCallsTheProviderWhileAnotherHolderHasTheClaimAndServesItsCommit() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await Self.enroll(fixture, "alice")
        let name = FleetFixture.name("alice")
        // Another host holds the claim (mid-refresh) for a minute.
        let other = try #require(try await admin.acquireLease(name: name, holder: "host-other", ttl: .seconds(60)))
        let follower = try await Agent(fixture, holder: "agent-f")
        let waiting = Task { await follower.engine.refresh(name, force: true) }
        #expect(await eventually { await follower.engine.currentStatistics.heldElsewhere >= 1 })
        #expect(follower.provider.callCount == 0)
        // The holder commits: the follower learns it by notification and
        // its waiting client gets the holder's token, not a refresh of its own.
        try await admin.commit(FleetFixture.refresh("alice", from: 1, token: "by-other"), lease: other)
        guard case .refreshed(let snapshot) = await waiting.value else {
            Issue.record("the waiting refresh did not end with the holder's token")
            return
        }
        #expect(snapshot.accessToken?.exposedValue == "at-by-other")
        #expect(follower.token("alice") == "at-by-other")
        #expect(follower.provider.callCount == 0)
        #expect(await follower.engine.currentStatistics.followed >= 1)
        await follower.stop()
    }

    @Test func aResultCommittedAfterTheLeaseWasTakenOverIsFencedOffAndTheStoresCopyWins() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await Self.enroll(fixture, "alice")
        let name = FleetFixture.name("alice")
        // A six-second lease (room for a busy machine between the claim and
        // the provider call), a provider that answers only when told, and
        // renewals that stall: the agent is "frozen" mid-refresh past its
        // lease, as SIGSTOP would leave it.
        let stalled = StalledRenewals()
        let frozen = try await Agent(fixture, holder: "agent-frozen", lease: .seconds(6)) { stalled.wrapping($0) }
        stalled.stall()
        frozen.provider.hold()
        let refreshing = Task { await frozen.engine.refresh(name, force: true) }
        #expect(await eventually { frozen.provider.callCount == 1 })
        // Its lease runs out; another host takes over and commits.
        var takeover: Lease?
        let deadline = ContinuousClock.now + .seconds(30)
        while takeover == nil, ContinuousClock.now < deadline {
            takeover = try await admin.acquireLease(name: name, holder: "host-b", ttl: .seconds(60))
            if takeover == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        try await admin.commit(FleetFixture.refresh("alice", from: 1, token: "by-b"), lease: try #require(takeover))
        // The frozen agent resumes: its result must not reach the store.
        stalled.resume()
        frozen.provider.release()
        _ = await refreshing.value
        let stored = try #require(try await admin.identity(named: name))
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-by-b")
        #expect(stored.record.generation == 2)
        #expect(await eventually { frozen.token("alice") == "at-by-b" })
        await frozen.stop()
    }

    @Test func aRefreshSlowerThanTheLeaseKeepsItByRenewingAndCommits() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        _ = try await fixture.create()
        try await Self.enroll(fixture, "alice")
        // A provider half again as slow as the lease (with room for a busy
        // machine: renewals come every third of it).
        let agent = try await Agent(fixture, holder: "agent-slow", lease: .seconds(10))
        agent.provider.setDelay(.seconds(15))
        guard case .refreshed(let snapshot) = await agent.engine.refresh(FleetFixture.name("alice"), force: true) else {
            Issue.record("the slow refresh did not commit")
            return
        }
        #expect(snapshot.accessToken?.exposedValue == "at-p-1")
        let stored = try #require(try await fixture.open().identity(named: FleetFixture.name("alice")))
        #expect(stored.record.generation == 2)
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        await agent.stop()
    }

    @Test func anIdentityRemovedOrEnrolledOnAnotherHostIsForgottenOrServedHere() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        try await Self.enroll(fixture, "alice")
        let agent = try await Agent(fixture, holder: "agent-a")
        #expect(agent.token("alice") == "at-first-alice")
        try await Self.enroll(fixture, "bob")
        #expect(await eventually { agent.token("bob") == "at-first-bob" })
        try await admin.remove(FleetFixture.name("alice"))
        #expect(await eventually { agent.engine.cache.snapshot(FleetFixture.name("alice")) == nil })
        #expect(agent.provider.callCount == 0)
        await agent.stop()
    }

    @Test func declaredIdentitiesSyncedByManyAgentsAtOnceAreEnrolledOnce() async throws {
        let fixture = try FleetFixture()
        _ = try await fixture.create()
        let declared = (0..<5).map {
            Enrollment(
                name: FleetFixture.name("svc-\($0)"), provider: "p", refreshToken: Secret("rt-declared-\($0)"),
                fromConfiguration: true)
        }
        // Five agents start from the same configuration together.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<5 {
                group.addTask {
                    let vault = try await fixture.open()
                    let engine = RefreshEngine(
                        vault: vault, exclusion: FleetExclusion(vault: vault, holder: "agent-\(index)", ttl: .seconds(30)),
                        providers: ["p": ScriptedProvider(name: "p")], clock: ContinuousClock())
                    try await engine.declare(declared)
                    await vault.close()
                }
            }
            try await group.waitForAll()
        }
        let vault = try await fixture.open()
        for enrollment in declared {
            // Generation 1: enrolled once, never replaced by a second agent.
            #expect(try await vault.identity(named: enrollment.name)?.record.generation == 1)
        }
        await vault.close()
    }
}

/// The real fleet claims, with renewals that can be held back: what a
/// process stopped mid-refresh looks like to the database.
final class StalledRenewals: Sendable {
    private let stalled = Mutex(false)

    func stall() { stalled.withLock { $0 = true } }
    func resume() { stalled.withLock { $0 = false } }

    func wrapping(_ exclusion: FleetExclusion) -> any RefreshExclusion {
        Wrapped(real: exclusion, owner: self)
    }

    private struct Wrapped: RefreshExclusion {
        let real: FleetExclusion
        let owner: StalledRenewals

        func claim(_ name: IdentityName, forEnrollment: Bool) async throws -> RefreshClaim {
            try await real.claim(name, forEnrollment: forEnrollment)
        }
        func commit(_ result: RefreshCommit, under lease: Lease) async throws -> Int64? {
            try await real.commit(result, under: lease)
        }
        func release(_ lease: Lease) async { await real.release(lease) }
        var renewalInterval: Duration { real.renewalInterval }
        var leaseLifetime: Duration { real.leaseLifetime }

        func renew(_ lease: Lease) async throws -> Lease? {
            while owner.stalled.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
            return try await real.renew(lease)
        }
    }
}
