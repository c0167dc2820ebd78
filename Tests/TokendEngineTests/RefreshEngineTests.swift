import Foundation
import Testing
import TokendCore
import TokendCache
import TokendEngine
import TokendTestKit

@Suite("Refresh engine with a manual clock")
struct RefreshEngineTests {
    @Test func refreshFiresAtThePlannedTimeAndIsCommittedBeforeServed() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        // 2/3 of 300 s, no jitter (random = 0): due at 200 s.
        await fixture.advance(199)
        #expect(fixture.provider.callCount == 0)
        await fixture.advance(2)
        #expect(await eventually { fixture.snapshot("a")?.accessToken?.exposedValue == "at-p-1" })
        #expect(fixture.provider.callCount == 1)
        #expect(fixture.provider.requests.first == .refreshToken(Secret("rt-0")))
        let stored = try #require(try await fixture.stored("a"))
        #expect(stored.secrets.accessToken?.exposedValue == "at-p-1")
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        #expect(stored.secrets.previousRefreshToken == nil)
        #expect(try await fixture.vault.pendingIntents().isEmpty)
        // The next refresh is planned from the new token: 200 s later.
        #expect(fixture.snapshot("a")?.nextRefresh == fixture.now.addingTimeInterval(200))
        await fixture.stop()
    }

    @Test func aHundredConcurrentRequestsCauseOneProviderCall() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        fixture.provider.setDelay(.milliseconds(300))
        let engine = fixture.engine!
        let outcomes = await withTaskGroup(of: RefreshOutcome.self) { group in
            for _ in 0..<100 {
                group.addTask { await engine.refresh(IdentityName("a")!, force: false, minimumTTL: 1000) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(fixture.provider.callCount == 1)
        let tokens = outcomes.compactMap { outcome -> String? in
            if case .refreshed(let snapshot) = outcome { return snapshot.accessToken?.exposedValue }
            return nil
        }
        #expect(tokens.count == 100)
        #expect(Set(tokens) == ["at-p-1"])
        await fixture.stop()
    }

    @Test func aFreshEnoughTokenIsServedWithoutARefresh() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: false, minimumTTL: 60)
        guard case .refreshed(let snapshot) = outcome else {
            Issue.record("expected the current token, got \(outcome)")
            return
        }
        #expect(snapshot.accessToken?.exposedValue == "at-initial-a")
        #expect(fixture.provider.callCount == 0)
        await fixture.stop()
    }

    @Test func transientFailuresBackOffThenRecover() async throws {
        let fixture = try EngineFixture(randomValue: 1)  // full ceiling, so delays are exact
        try await fixture.enroll("a", lifetime: 600)
        let transient = ProviderError(.transient(retryAfter: nil), "HTTP 503")
        fixture.provider.enqueue(.fail(transient), .fail(transient), .fail(transient))
        try await fixture.start()
        // random = 1 means full jitter too: due at 2/3·600 − 60 = 340 s.
        await fixture.advance(340)
        #expect(await eventually { fixture.provider.callCount == 1 })
        #expect(await eventually { fixture.snapshot("a")?.state(at: fixture.now) == .stale })
        #expect(fixture.snapshot("a")?.lastError == "transient")
        #expect(fixture.snapshot("a")?.servableToken(at: fixture.now)?.exposedValue == "at-initial-a", "stale is still served")
        // Backoff 1 s, 2 s, 4 s.
        for (delay, calls) in [(1.0, 2), (2.0, 3), (4.0, 4)] {
            await fixture.advance(delay - 0.1)
            #expect(fixture.provider.callCount == calls - 1)
            await fixture.advance(0.2)
            #expect(await eventually { fixture.provider.callCount == calls })
        }
        #expect(await eventually { fixture.snapshot("a")?.state(at: fixture.now) == .fresh })
        #expect(fixture.snapshot("a")?.failures == 0)
        await fixture.stop()
    }

    @Test func anExpiredTokenIsNeverServed() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 30)
        for _ in 0..<50 { fixture.provider.enqueue(.fail(ProviderError(.transient(retryAfter: 10), "HTTP 429"))) }
        try await fixture.start()
        await fixture.advance(21)
        #expect(await eventually { fixture.snapshot("a")?.state(at: fixture.now) == .stale })
        await fixture.advance(10)
        #expect(await eventually { fixture.snapshot("a")?.state(at: fixture.now) == .expired })
        #expect(fixture.snapshot("a")?.servableToken(at: fixture.now) == nil)
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: false, minimumTTL: 0)
        guard case .failed(let snapshot, let code, _, let retryAfter) = outcome else {
            Issue.record("expected a failure, got \(outcome)")
            return
        }
        #expect(code == "transient")
        #expect(snapshot?.servableToken(at: fixture.now) == nil)
        #expect((retryAfter ?? 0) >= 9, "Retry-After 10 s is honoured")
        await fixture.stop()
    }

    @Test func aRejectedGrantWithoutSessionNeedsReauthentication() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        fixture.provider.enqueue(.fail(ProviderError(.invalidGrant, "invalid_grant")))
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .reauthRequired = outcome else {
            Issue.record("expected reauth_required, got \(outcome)")
            return
        }
        #expect(fixture.snapshot("a")?.state(at: fixture.now) == .reauthRequired)
        #expect(try await fixture.stored("a")?.record.state == .reauthRequired)
        // No more calls: the grant is dead.
        await fixture.advance(3600)
        #expect(fixture.provider.callCount == 1)
        await fixture.stop()
    }

    @Test func aRejectedRefreshTokenFallsBackToSilentReauthentication() async throws {
        let fixture = try EngineFixture(supportsSessions: true)
        try await fixture.enroll("a", lifetime: 300, sessionID: "sid-0")
        fixture.provider.enqueue(
            .fail(ProviderError(.invalidGrant, "refresh token dead")), .succeed(lifetime: 300, sessionID: "sid-1"))
        try await fixture.start()
        let outcome = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .refreshed(let snapshot) = outcome else {
            Issue.record("expected success, got \(outcome)")
            return
        }
        #expect(snapshot.accessToken?.exposedValue == "at-p-2")
        #expect(fixture.provider.requests == [.refreshToken(Secret("rt-0")), .session(Secret("sid-0"))])
        let stored = try #require(try await fixture.stored("a"))
        #expect(stored.secrets.sessionID?.exposedValue == "sid-1")
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-2")

        // If the session is dead too: reauth_required, after exactly one try.
        fixture.provider.enqueue(.fail(ProviderError(.invalidGrant, "dead")), .fail(ProviderError(.invalidGrant, "dead too")))
        let second = await fixture.engine.refresh(IdentityName("a")!, force: true)
        guard case .reauthRequired = second else {
            Issue.record("expected reauth_required, got \(second)")
            return
        }
        #expect(fixture.provider.callCount == 4)
        await fixture.stop()
    }

    @Test func aMisconfiguredClientMarksEveryIdentityOfItsProvider() async throws {
        let fixture = try EngineFixture()
        for name in ["a", "b", "c"] { try await fixture.enroll(name, lifetime: 300) }
        fixture.provider.enqueue(.fail(ProviderError(.clientMisconfigured, "invalid_client")))
        try await fixture.start()
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        for name in ["a", "b", "c"] {
            #expect(fixture.snapshot(name)?.state(at: fixture.now) == .stale)
            #expect(fixture.snapshot(name)?.lastError == "client_misconfigured")
        }
        // Left alone (no hammering) until the retry time or a reload.
        await fixture.advance(250)
        #expect(fixture.provider.callCount == 1)
        try await fixture.engine.reconfigure(providers: ["p": fixture.provider], declared: [])
        #expect(await eventually { fixture.snapshot("a")?.state(at: fixture.now) == .fresh })
        await fixture.stop()
    }

    @Test func anInterruptedRefreshIsRetriedFirstAtStart() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("crashed", lifetime: 3000)
        try await fixture.enroll("other", lifetime: 3000)
        // As if the agent died after recording the intent, before the commit.
        try await fixture.vault.recordIntent(RefreshIntent(name: IdentityName("crashed")!, generation: 2, startedAt: fixture.now))
        let report = try await fixture.engine.start()
        #expect(report.recovering == 1)
        let engine = fixture.engine!
        let loop = Task { try? await engine.run() }
        #expect(await eventually { fixture.snapshot("crashed")?.accessToken?.exposedValue == "at-p-1" })
        #expect(fixture.provider.requests == [.refreshToken(Secret("rt-0"))], "once, with the current refresh token")
        #expect(try await fixture.vault.pendingIntents().isEmpty)
        #expect(fixture.snapshot("other")?.accessToken?.exposedValue == "at-initial-other")
        loop.cancel()
        await loop.value
    }

    @Test func refreshesAreCappedAndRateLimited() async throws {
        var settings = EngineSettings()
        settings.maxConcurrentRefreshes = 16
        settings.providerRate = 50
        settings.providerBurst = 50
        let fixture = try EngineFixture(settings: settings)
        try await fixture.vault.enroll(batch: (0..<200).map {
            Enrollment(name: IdentityName("id-\($0)")!, provider: "p", refreshToken: Secret("rt"))
        })
        fixture.provider.setDelay(.milliseconds(100))
        try await fixture.start()
        // Pending identities all due at once: only 16 in flight.
        let engine = fixture.engine!
        #expect(await eventually { await engine.currentStatistics.inFlight == 16 })
        #expect(await eventually { fixture.provider.callCount == 50 })
        try await Task.sleep(for: .milliseconds(300))
        #expect(fixture.provider.callCount == 50, "the burst is spent; the rest waits for the bucket")
        await fixture.advance(1)
        #expect(await eventually { fixture.provider.callCount == 100 })
        // The bucket holds at most a burst: 50 more per second, never more.
        await fixture.advance(3)
        #expect(await eventually { fixture.provider.callCount == 150 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(fixture.provider.callCount == 150)
        await fixture.advance(1)
        #expect(await eventually { fixture.provider.callCount == 200 })
        // Over the whole run, not one sample: never more than the cap at once.
        #expect(fixture.provider.maximumConcurrentCalls == 16)
        await fixture.stop()
    }

    @Test func watchersSeeEveryChange() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 300)
        try await fixture.start()
        let updates = fixture.engine.cache.watch(IdentityName("a")!)
        // Collected with a deadline: a missing update fails, it does not hang.
        let collector = Task { () -> [String] in
            var seen: [String] = []
            for await update in updates {
                guard let token = update?.accessToken?.exposedValue else { continue }
                if seen.last != token { seen.append(token) }
                if token == "at-p-1" { break }
            }
            return seen
        }
        _ = await fixture.engine.refresh(IdentityName("a")!, force: true)
        let deadline = Task {
            try await Task.sleep(for: .seconds(10))
            collector.cancel()
        }
        let seen = await collector.value
        deadline.cancel()
        #expect(seen == ["at-initial-a", "at-p-1"])
        await fixture.stop()
    }

    @Test func aWallClockJumpReplansEverything() async throws {
        let fixture = try EngineFixture()
        try await fixture.enroll("a", lifetime: 3600)
        try await fixture.start()
        // The wall clock leaps two hours ahead: the token is now expired by
        // the wall clock, though no monotonic time passed.
        fixture.clock.jumpWallClock(by: 7200)
        await fixture.advance(0.01)
        #expect(await eventually { fixture.provider.callCount == 1 })
        await fixture.stop()
    }

    /// The real case: the loop is asleep until a refresh far away when the
    /// wall clock jumps. It wakes at least every `maximumSleep` (30 s by
    /// default, sooner with a watchdog) and re-plans.
    @Test func aWallClockJumpDuringALongSleepIsNoticedWithinTheMaximumSleep() async throws {
        var settings = EngineFixture.defaultSettings
        settings.maximumSleep = .seconds(30)
        let fixture = try EngineFixture(settings: settings)
        try await fixture.enroll("a", lifetime: 3600)
        try await fixture.start()
        await fixture.advance(1)
        #expect(fixture.provider.callCount == 0)
        // Asleep until the refresh at 40 min; now the wall clock leaps 2 h.
        fixture.clock.jumpWallClock(by: 7200)
        await fixture.advance(31)
        #expect(await eventually { fixture.provider.callCount == 1 })
        await fixture.stop()
    }

    @Test func theEngineWakesAtLeastEveryThirtySecondsByDefault() {
        #expect(EngineSettings().maximumSleep == .seconds(30))
    }

    func token(_ snapshot: TokenSnapshot) -> String? { snapshot.accessToken?.exposedValue }
}
