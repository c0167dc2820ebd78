import Foundation

/// When to refresh an access token, as plain numbers.
///
/// Defaults follow docs/DESIGN.md: refresh at 2/3 of the lifetime, minus up to
/// 10% of the lifetime of random jitter (so identities issued together do
/// not refresh together), never later than a safety margin before expiry.
package struct RefreshPolicy: Sendable, Hashable {
    /// Fraction of the lifetime at which to refresh (0 < f < 1).
    package var refreshAt: Double
    /// Largest jitter, as a fraction of the lifetime, subtracted at random.
    package var jitter: Double
    /// Refresh at least this long before expiry (capped at 10% of the lifetime).
    package var safetyMargin: TimeInterval
    /// Never refresh sooner than this after issue, so a provider handing out
    /// very short tokens cannot drive a hot loop.
    package var minimumInterval: TimeInterval
    /// Lifetime assumed for a token that came without an expiry.
    package var defaultLifetime: TimeInterval

    package init(
        refreshAt: Double = 2.0 / 3.0, jitter: Double = 0.10, safetyMargin: TimeInterval = 60,
        minimumInterval: TimeInterval = 1, defaultLifetime: TimeInterval = 3600
    ) {
        self.refreshAt = refreshAt
        self.jitter = jitter
        self.safetyMargin = safetyMargin
        self.minimumInterval = minimumInterval
        self.defaultLifetime = defaultLifetime
    }

    /// This policy with an identity's own refresh fraction, if it has one.
    package func with(refreshAt fraction: Double?) -> RefreshPolicy {
        var copy = self
        if let fraction { copy.refreshAt = fraction }
        return copy
    }
}

/// How long to wait after a failed refresh: exponential backoff with full
/// jitter (AWS architecture blog, "Exponential Backoff and Jitter").
package struct BackoffPolicy: Sendable, Hashable {
    package var base: TimeInterval
    package var cap: TimeInterval

    package init(base: TimeInterval = 1, cap: TimeInterval = 300) {
        self.base = base
        self.cap = cap
    }
}

/// The pure functions of refresh timing. No clocks, no randomness of their
/// own: callers pass `now` and a random number in `0..<1`, so every case is
/// a row in a table test.
package enum RefreshPlanning {
    /// When to refresh a token issued at `issuedAt` that expires at
    /// `expiresAt` (nil: unknown, use the default lifetime).
    ///
    /// Returns `now` when the token is already expired, has no positive
    /// lifetime, or the wall clock jumped (issue time in the future): the
    /// plan cannot be trusted, so refresh at once.
    package static func refreshTime(
        issuedAt: Date, expiresAt: Date?, now: Date, policy: RefreshPolicy, random: Double
    ) -> Date {
        let expiry = expiresAt ?? issuedAt.addingTimeInterval(policy.defaultLifetime)
        let lifetime = expiry.timeIntervalSince(issuedAt)
        // One second of slack: clocks of the same host differ by less.
        guard lifetime > 0, expiry > now, issuedAt <= now.addingTimeInterval(1) else { return now }

        let jitter = min(max(random, 0), 1) * policy.jitter * lifetime
        let target = issuedAt.addingTimeInterval(lifetime * policy.refreshAt - jitter)
        let latest = expiry.addingTimeInterval(-min(policy.safetyMargin, lifetime * 0.1))
        let earliest = issuedAt.addingTimeInterval(policy.minimumInterval)
        let planned = max(min(target, latest), earliest)
        return max(planned, now)
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    ///
    /// Full jitter over `base·2^(attempt-1)`, capped at `cap`; never past the
    /// token's expiry while it is still valid (better one more try while it
    /// can still be replaced in time); and never sooner than the provider's
    /// `Retry-After`, which wins even over the expiry: hammering a provider
    /// that asked for quiet only gets the client throttled harder.
    package static func retryDelay(
        attempt: Int, retryAfter: TimeInterval?, expiresAt: Date?, now: Date, policy: BackoffPolicy, random: Double
    ) -> TimeInterval {
        let exponent = Double(min(max(attempt, 1) - 1, 30))
        let ceiling = min(policy.cap, policy.base * pow(2, exponent))
        var delay = min(max(random, 0), 1) * ceiling
        if let expiresAt, expiresAt > now {
            delay = min(delay, expiresAt.timeIntervalSince(now))
        }
        if let retryAfter, retryAfter > delay {
            delay = min(retryAfter, 24 * 3600)
        }
        return max(delay, 0)
    }
}
