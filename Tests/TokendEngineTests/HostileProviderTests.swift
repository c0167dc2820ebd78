import Foundation
import Testing
import TokendCore
import TokendCache
import TokendEngine
import TokendTestKit
import TokendVault

/// What a broken or malicious provider can do to the engine: at most deny
/// its own identities. It cannot crash the agent, loop it, or make it serve
/// something that is not a token.
@Suite("Engine against a hostile provider")
struct HostileProviderTests {
    /// Retries are spaced (and the manual clock stands still), so what a
    /// test checks after one refresh is that refresh's outcome.
    static var spaced: EngineSettings {
        var settings = EngineFixture.defaultSettings
        settings.minimumRefreshInterval = .seconds(2)
        return settings
    }

    @Test(arguments: [1e300, 1.7976931348623157e308, Double(Int64.max), 1e19])
    func aHugeLifetimeIsClampedCommittedAndSurvivesARestart(lifetime: Double) async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.grant(accessToken: "at-huge", lifetime: lifetime, refreshToken: "rt-huge"))
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        let snapshot = try #require(fixture.snapshot("a"))
        #expect(snapshot.accessToken?.exposedValue == "at-huge")
        let expiry = try #require(snapshot.expiresAt)
        #expect(abs(expiry.timeIntervalSince(fixture.now) - ProviderReplyGate.lifetimeRange.upperBound) < 2)
        await fixture.stop()

        // The committed result must not bring the next start down either
        // (the original bug trapped at every restart).
        let restarted = RefreshEngine(
            vault: fixture.vault, providers: ["p": fixture.provider], clock: fixture.clock,
            wallClock: fixture.clock.wallClock, random: { 0 })
        let loaded = try await restarted.start()
        #expect(loaded.identities == 1)
        #expect(restarted.cache.snapshot(IdentityName("a")!)?.accessToken?.exposedValue == "at-huge")
    }

    /// A vault written by an older build (or by hand) with an expiry of
    /// 1e300: the start used to trap converting it, at every restart.
    @Test func aHugeExpiryAlreadyInTheVaultDoesNotStopAStart() async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.vault.commit(RefreshCommit(
            name: IdentityName("a")!, expectedGeneration: 2, accessToken: Secret("at-forever"), issuedAt: fixture.now,
            expiresAt: Date(timeIntervalSince1970: 1e300)))
        try await fixture.start()
        let snapshot = try #require(fixture.snapshot("a"))
        #expect(snapshot.expiresIn(at: fixture.now) == Int(WholeSeconds.maximum))
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: false, minimumTTL: 60)
        guard case .refreshed(let served) = outcome else {
            Issue.record("expected the stored token, got \(outcome)")
            return
        }
        #expect(served.accessToken?.exposedValue == "at-forever")
        await fixture.stop()
    }

    @Test(arguments: [Double.nan, Double.infinity, -Double.infinity])
    func aLifetimeThatIsNotFiniteIsMalformedAndTheOldTokenIsKept(lifetime: Double) async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.grant(accessToken: "at-bad", lifetime: lifetime, refreshToken: "rt-bad"))
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .failed(_, let code, _, _) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(code == "malformed_response")
        #expect(fixture.snapshot("a")?.accessToken?.exposedValue == "at-initial-a")
        #expect(try await fixture.stored("a")?.secrets.refreshToken?.exposedValue == "rt-0")
        await fixture.stop()
    }

    @Test(arguments: [
        "tok\nOK injected 999 Bearer", "tok en", "tok\r", "tok\u{0}", "", "tök", "tok=x",
        String(repeating: "a", count: ProviderReplyGate.maximumAccessTokenLength + 1),
    ])
    func anAccessTokenOutsideB64TokenIsRefused(token: String) async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.grant(accessToken: token, lifetime: 300))
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .failed(let snapshot, let code, let message, _) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(code == "malformed_response")
        #expect(!token.isEmpty ? !message.contains(token) : true)
        #expect(snapshot?.accessToken?.exposedValue == "at-initial-a")
        await fixture.stop()
    }

    @Test(arguments: ["Bearer\nx", "Be arer", "", String(repeating: "B", count: 65)])
    func aTokenTypeOutsideTheGrammarIsRefused(type: String) async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.grant(accessToken: "at-ok", lifetime: 300, tokenType: type))
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .failed(_, let code, _, _) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(code == "malformed_response")
        await fixture.stop()
    }

    @Test(arguments: ["rt\nx", "rt\u{0}", "rté", "", String(repeating: "r", count: ProviderReplyGate.maximumSecretLength + 1)])
    func aRefreshTokenOutsideVisibleASCIIIsRefusedAndTheOldOneKept(refreshToken: String) async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.grant(accessToken: "at-ok", lifetime: 300, refreshToken: refreshToken))
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        // An empty rotation means "not rotated" (ScriptedProvider passes it
        // through as is): the gate refuses it like any other bad value.
        #expect(try await fixture.stored("a")?.secrets.refreshToken?.exposedValue == "rt-0")
        #expect(fixture.snapshot("a")?.accessToken?.exposedValue == "at-initial-a")
        await fixture.stop()
    }

    /// `expires_in: 0` used to refresh in a hot loop (~80/s from one identity).
    @Test(arguments: [0.0, -5.0, 0.001])
    func aZeroLifetimeCannotDriveAHotLoop(lifetime: Double) async throws {
        var settings = EngineSettings()
        settings.minimumRefreshInterval = .seconds(2)
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.setDefaultLifetime(lifetime)
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.provider.callCount == 1)
        // Twenty simulated seconds: at most one refresh per two seconds.
        for _ in 0..<40 { await fixture.advance(0.5) }
        #expect(await eventually { fixture.provider.callCount >= 2 })
        #expect(fixture.provider.callCount <= 11, "\(fixture.provider.callCount) refreshes in 20 s")
        await fixture.stop()
    }

    @Test func forcedRefreshesOfOneIdentityAreSpacedByTheMinimumInterval() async throws {
        var settings = EngineSettings()
        settings.minimumRefreshInterval = .seconds(5)
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.provider.callCount == 1)
        let engine = fixture.engine!
        let second = Task { await engine.refresh(IdentityName("a")!, force: true) }
        await fixture.advance(4)
        #expect(fixture.provider.callCount == 1)
        await fixture.advance(1.5)
        #expect(await eventually { fixture.provider.callCount == 2 })
        _ = await second.value
        await fixture.stop()
    }

    /// A refused grant of a `client_credentials` identity is the client's
    /// own problem (an outage, a misconfiguration): retried, never a dead end.
    @Test func aClientCredentialsIdentitySurvivesInvalidGrantAndRecovers() async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.vault.enroll(Enrollment(name: IdentityName("cc")!, provider: "p", grant: .clientCredentials))
        fixture.provider.enqueue(
            .fail(ProviderError(.invalidGrant, "400 invalid_grant")), .fail(ProviderError(.invalidGrant, "400 invalid_grant")))
        try await fixture.start()
        #expect(await eventually { fixture.snapshot("cc")?.failures == 1 })
        #expect(fixture.snapshot("cc")?.condition == .active)
        #expect(fixture.snapshot("cc")?.lastError == "invalid_grant")
        // Backoff, then the provider is back.
        for _ in 0..<20 where fixture.snapshot("cc")?.accessToken == nil { await fixture.advance(2.5) }
        #expect(await eventually { fixture.snapshot("cc")?.accessToken != nil })
        #expect(fixture.snapshot("cc")?.condition == .active)
        await fixture.stop()
    }

    @Test func anAdminRefreshRetriesAGrantInReauthRequired() async throws {
        let fixture = try EngineFixture(settings: Self.spaced)
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.fail(ProviderError(.invalidGrant, "invalid_grant")))
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.snapshot("a")?.condition == .reauthRequired)
        await fixture.advance(3)
        // The provider was wrong (or was fixed): an operator's REFRESH revives it.
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .refreshed(let snapshot) = outcome else {
            Issue.record("expected a refresh, got \(outcome)")
            return
        }
        #expect(snapshot.condition == .active)
        #expect(snapshot.accessToken?.exposedValue == "at-p-2")
        #expect(try await fixture.stored("a")?.record.state == .fresh)
        await fixture.stop()
    }
}

@Suite("Identities replaced while a refresh runs")
struct ReplacedWhileRefreshingTests {
    /// REMOVE then ENROLL of the same name while the old refresh is in
    /// flight: the old result must never land on the new identity, and the
    /// new secrets must not be refreshed while the old refresh still runs.
    @Test func removeThenEnrollDuringARefreshKeepsTheFamiliesApart() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        let engine = fixture.engine!
        let name = IdentityName("a")!
        fixture.provider.hold()
        let old = Task { await engine.refresh(name, force: true) }
        #expect(await eventually { fixture.provider.callCount == 1 })

        let oldGeneration = try #require(try await fixture.stored("a")).record.generation
        #expect(try await engine.remove(name, logout: .none))
        let generation = try await engine.enroll(Enrollment(name: name, provider: "p", refreshToken: Secret("rt-new")))
        #expect(generation > oldGeneration, "a re-enrolled name continues its generations")
        // The race this test is about: the old refresh was still running.
        #expect(await engine.currentStatistics.inFlight == 1, "the old refresh ended before the re-enrollment")
        fixture.provider.release()
        _ = await old.value

        // The old family's token (at-p-1) never reaches the new identity;
        // the new one is refreshed from its own refresh token, after.
        #expect(await eventually { fixture.snapshot("a")?.accessToken != nil })
        #expect(fixture.snapshot("a")?.accessToken?.exposedValue != "at-p-1")
        let requests = fixture.provider.requests
        #expect(requests.count == 2)
        #expect(requests.last == .refreshToken(Secret("rt-new")))
        #expect(fixture.provider.maximumConcurrentCalls == 1)
        #expect(try await fixture.stored("a")?.secrets.refreshToken?.exposedValue == "rt-p-2")
        await fixture.stop()
    }

    /// An identity waiting in provider p's queue is re-enrolled with
    /// provider q: its new refresh token goes to q, never to p, and p's
    /// share of the refresh slots is not left counting it.
    /// (Before the fix, p's slot stayed counted and the last refresh of
    /// `a` waited forever: the time limit turns that into a failure.)
    @Test(.timeLimit(.minutes(1)))
    func aQueuedIdentityReEnrolledWithAnotherProviderIsRefreshedThere() async throws {
        var settings = EngineFixture.defaultSettings
        settings.maxConcurrentRefreshes = 1
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.enroll("b", lifetime: 300)
        try await fixture.start()
        let engine = fixture.engine!
        fixture.provider.hold()
        let first = Task { await engine.refresh(IdentityName("a")!, force: true) }
        #expect(await eventually { fixture.provider.callCount == 1 })
        // The only slot is taken: b waits in p's queue.
        let second = Task { await engine.refresh(IdentityName("b")!, force: true) }
        #expect(await eventually { await engine.currentStatistics.queued == 1 })
        _ = try await engine.enroll(Enrollment(name: IdentityName("b")!, provider: "q", refreshToken: Secret("rt-q")))
        fixture.provider.release()
        _ = await first.value
        _ = await second.value

        #expect(await eventually { fixture.otherProvider.callCount == 1 })
        #expect(fixture.otherProvider.requests == [.refreshToken(Secret("rt-q"))])
        #expect(!fixture.provider.requests.contains(.refreshToken(Secret("rt-q"))), "p never sees q's refresh token")
        #expect(fixture.provider.callCount == 1)
        // p's slots are all free again: another of its identities refreshes.
        _ = await engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.provider.callCount == 2)
        #expect(await engine.currentStatistics.inFlight == 0)
        await fixture.stop()
    }

    @Test func aResultTheVaultRefusedIsDroppedWhenTheIdentityIsReEnrolled() async throws {
        var settings = EngineSettings()
        settings.commitRetryDelays = []
        settings.minimumRefreshInterval = .zero
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        let engine = fixture.engine!
        let name = IdentityName("a")!
        // The vault refuses the commit (read-only for a moment): the result is held.
        fixture.store.refuseCommits(true)
        _ = await engine.refresh(name, force: true)
        #expect(fixture.provider.callCount == 1)
        fixture.store.refuseCommits(false)

        // Re-enrolled meanwhile: the held result belongs to dead secrets.
        let generation = try await engine.enroll(Enrollment(name: name, provider: "p", refreshToken: Secret("rt-fresh")))
        #expect(await eventually { fixture.snapshot("a")?.accessToken != nil })
        #expect(await eventually { fixture.provider.callCount == 2 })
        #expect(fixture.provider.requests.last == .refreshToken(Secret("rt-fresh")))
        let stored = try #require(try await fixture.stored("a"))
        #expect(stored.record.generation == generation + 1)
        #expect(stored.secrets.accessToken?.exposedValue == "at-p-2")
        await fixture.stop()
    }
}

@Suite("A result the vault refused")
struct HeldResultTests {
    /// The provider rotated the refresh token, the vault refused the
    /// result: it is held and committed at the next attempt, without
    /// calling the provider again (which would reuse a dead token).
    @Test func isCommittedLaterWithoutASecondProviderCall() async throws {
        var settings = EngineFixture.defaultSettings
        settings.commitRetryDelays = []
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        fixture.store.refuseCommits(true)
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.provider.callCount == 1)
        #expect(try await fixture.stored("a")?.secrets.refreshToken?.exposedValue == "rt-0")
        #expect(fixture.snapshot("a")?.accessToken?.exposedValue == "at-initial-a", "nothing uncommitted is served")

        fixture.store.refuseCommits(false)
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        #expect(fixture.provider.callCount == 1, "the held result was committed instead of a new call")
        let stored = try #require(try await fixture.stored("a"))
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        #expect(stored.secrets.accessToken?.exposedValue == "at-p-1")
        #expect(fixture.snapshot("a")?.accessToken?.exposedValue == "at-p-1")
        await fixture.stop()
    }
}
