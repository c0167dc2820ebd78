import Foundation
import Testing
import TokendCore

@Suite("Refresh planning and backoff are pure functions of their inputs")
struct RefreshPlanningTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let policy = RefreshPolicy()

    func plan(issued: TimeInterval = 0, lifetime: TimeInterval?, now: TimeInterval, random: Double = 0,
              policy: RefreshPolicy = RefreshPolicy()) -> TimeInterval {
        let issuedAt = Self.t0.addingTimeInterval(issued)
        return RefreshPlanning.refreshTime(
            issuedAt: issuedAt, expiresAt: lifetime.map { issuedAt.addingTimeInterval($0) },
            now: Self.t0.addingTimeInterval(now), policy: policy, random: random
        ).timeIntervalSince(Self.t0)
    }

    @Test(arguments: [
        // (lifetime, random, expected offset from issue)
        (3600.0, 0.0, 2400.0),         // 2/3 of an hour
        (3600.0, 1.0, 2040.0),         // minus the full 10% jitter
        (3600.0, 0.5, 2220.0),
        (300.0, 0.0, 200.0),           // 5 min token: 2/3, margin min(60, 30)=30 not binding
        (90.0, 0.0, 60.0),
        (31_536_000.0, 0.0, 21_024_000.0),  // a year-long token: 2/3 of a year
    ])
    func refreshesAtTwoThirdsMinusJitter(lifetime: Double, random: Double, expected: Double) {
        #expect(abs(plan(lifetime: lifetime, now: 0, random: random) - expected) < 0.001)
    }

    @Test func theSafetyMarginWinsOverALateFraction() {
        let late = RefreshPolicy(refreshAt: 0.99)
        // latest = expiry - min(60, 360) = 3540
        #expect(plan(lifetime: 3600, now: 0, policy: late) == 3540)
        // Short token: the margin shrinks to 10% of the lifetime.
        #expect(abs(plan(lifetime: 100, now: 0, policy: late) - 90) < 0.001)
    }

    @Test func theMinimumIntervalStopsHotLoops() {
        // A 1-second token would be refreshed every ~0.6 s; the minimum
        // interval (1 s) holds it back to once a second.
        #expect(plan(lifetime: 1, now: 0) == 1)
        let slow = RefreshPolicy(minimumInterval: 30)
        #expect(plan(lifetime: 40, now: 0, policy: slow) == 30)
    }

    @Test func noExpiryUsesTheDefaultLifetime() {
        #expect(plan(lifetime: nil, now: 0) == 2400)
        #expect(plan(lifetime: nil, now: 0, policy: RefreshPolicy(defaultLifetime: 600)) == 400)
    }

    @Test(arguments: [0.0, -5.0, -3600.0])
    func zeroOrNegativeLifetimeRefreshesNow(lifetime: Double) {
        #expect(plan(lifetime: lifetime, now: 10) == 10)
    }

    @Test func anExpiredTokenRefreshesNow() {
        #expect(plan(lifetime: 300, now: 500) == 500)
    }

    @Test func aPlanInThePastIsNow() {
        // Planned for 200 s but it is already 250 s (e.g. after a restart).
        #expect(plan(lifetime: 300, now: 250) == 250)
    }

    @Test func anIssueTimeInTheFutureMeansTheClockJumped() {
        // The wall clock went back an hour: the plan cannot be trusted.
        #expect(plan(issued: 3600, lifetime: 7200, now: 0) == 0)
    }

    @Test func perIdentityFractionOverridesTheDefault() {
        #expect(plan(lifetime: 1000, now: 0, policy: RefreshPolicy().with(refreshAt: 0.5)) == 500)
        #expect(abs(plan(lifetime: 1000, now: 0, policy: RefreshPolicy().with(refreshAt: nil)) - 2000.0 / 3.0) < 0.001)
    }

    func delay(attempt: Int, retryAfter: Double? = nil, expiresIn: Double? = nil, random: Double) -> Double {
        RefreshPlanning.retryDelay(
            attempt: attempt, retryAfter: retryAfter, expiresAt: expiresIn.map { Self.t0.addingTimeInterval($0) },
            now: Self.t0, policy: BackoffPolicy(), random: random)
    }

    @Test(arguments: [
        (1, 1.0, 1.0), (2, 1.0, 2.0), (3, 1.0, 4.0), (9, 1.0, 256.0),
        (10, 1.0, 300.0), (50, 1.0, 300.0),  // capped at 5 minutes
        (3, 0.5, 2.0), (10, 0.0, 0.0),       // full jitter: anywhere in [0, ceiling]
    ])
    func backoffDoublesWithFullJitterUpToFiveMinutes(attempt: Int, random: Double, expected: Double) {
        #expect(delay(attempt: attempt, random: random) == expected)
    }

    @Test func backoffNeverPlansPastAValidTokensExpiry() {
        #expect(delay(attempt: 10, expiresIn: 45, random: 1) == 45)
        // Already expired: plain backoff.
        #expect(delay(attempt: 10, expiresIn: -5, random: 1) == 300)
    }

    @Test func retryAfterIsHonouredEvenPastExpiry() {
        #expect(delay(attempt: 1, retryAfter: 30, random: 0.5) == 30)
        #expect(delay(attempt: 1, retryAfter: 600, expiresIn: 45, random: 1) == 600)
        // A smaller Retry-After does not shorten the backoff.
        #expect(delay(attempt: 9, retryAfter: 2, random: 1) == 256)
    }
}
