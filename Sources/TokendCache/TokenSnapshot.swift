import Foundation
import TokendCore

/// What the agent currently holds for one identity: the access token (if
/// any) and everything `GET`, `STATUS`, `LIST` and `WATCH` report.
package struct TokenSnapshot: Sendable, Hashable {
    package enum Condition: Sendable, Hashable {
        /// Refreshing normally (or not yet tried).
        case active
        /// The provider rejected the grant; an operator must re-enroll.
        case reauthRequired
        /// The vault could not decrypt this identity's secrets.
        case corrupt
    }

    package var name: IdentityName
    package var provider: String
    package var allowRules: [String]
    package var accessToken: Secret?
    package var tokenType: String
    package var issuedAt: Date?
    package var expiresAt: Date?
    package var condition: Condition
    package var refreshing: Bool
    /// Consecutive failed refreshes.
    package var failures: Int
    /// Secret-free code of the last failure (`invalid_grant`, `transient`...).
    package var lastError: String?
    package var generation: Int64
    package var nextRefresh: Date?
    /// When a client may try again, while no token can be served.
    package var retryAt: Date?
    /// The shared session group, if the identity is in one.
    package var sessionGroup: String?

    package init(
        name: IdentityName, provider: String, allowRules: [String], accessToken: Secret?, tokenType: String,
        issuedAt: Date?, expiresAt: Date?, condition: Condition, refreshing: Bool, failures: Int, lastError: String?,
        generation: Int64, nextRefresh: Date?, retryAt: Date?, sessionGroup: String? = nil
    ) {
        self.sessionGroup = sessionGroup
        self.name = name
        self.provider = provider
        self.allowRules = allowRules
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.condition = condition
        self.refreshing = refreshing
        self.failures = failures
        self.lastError = lastError
        self.generation = generation
        self.nextRefresh = nextRefresh
        self.retryAt = retryAt
    }

    /// Whether an allow rule names a systemd unit (`unit:`).
    package var hasUnitRule: Bool { allowRules.contains { $0.hasPrefix("unit:") } }

    /// The state as docs/PROTOCOL.md names it, at wall-clock time `now`.
    package func state(at now: Date) -> IdentityState {
        switch condition {
        case .reauthRequired: return .reauthRequired
        case .corrupt: return .corrupt
        case .active: break
        }
        if refreshing { return .refreshing }
        guard accessToken != nil, let expiresAt else { return failures == 0 ? .pending : .expired }
        if expiresAt <= now { return .expired }
        return failures > 0 ? .stale : .fresh
    }

    /// The token, if it may be handed out at `now`: present and unexpired.
    /// An expired token is never served.
    package func servableToken(at now: Date) -> Secret? {
        serving.isServable(at: now) ? accessToken : nil
    }

    /// Whole seconds until expiry (never negative).
    package func expiresIn(at now: Date) -> Int { serving.expiresIn(at: now) }

    /// True when the token is valid but its refresh is failing (`stale=1`).
    package func isStale(at now: Date) -> Bool { serving.isStale(at: now) }

    package var serving: Serving {
        Serving(
            expiresAt: expiresAt, hasToken: condition != .corrupt && accessToken != nil,
            failing: failures > 0 || condition == .reauthRequired)
    }

    /// What decides, at a given time, whether the token is served, for how
    /// long, and whether it is stale: plain values, copied without reference
    /// counting (the socket's front loop keeps one per prepared reply and
    /// asks it on every `GET`).
    package struct Serving: Sendable, Hashable {
        package let expiresAt: Date?
        /// A token is held and the identity is not corrupt.
        package let hasToken: Bool
        /// Its refresh is failing, or it needs re-enrollment.
        package let failing: Bool

        package func isServable(at now: Date) -> Bool {
            guard hasToken, let expiresAt else { return false }
            return expiresAt > now
        }

        package func expiresIn(at now: Date) -> Int {
            guard let expiresAt else { return 0 }
            return WholeSeconds.clamped(expiresAt.timeIntervalSince(now), .down)
        }

        package func isStale(at now: Date) -> Bool { isServable(at: now) && failing }
    }
}
