import Foundation
import TokendCore

/// How many identities are in each state, counted in one place for `STATS`,
/// the systemd status line and the metrics, so the three always agree.
///
/// The cache keeps one of these up to date as snapshots change
/// (``StateTally``), so reading it does not walk every identity; the
/// initializer over a sequence is the full count it must always equal.
package struct StateCounts: Sendable, Hashable {
    package private(set) var byState: [IdentityState: Int] = [:]
    package private(set) var total = 0
    /// Identities a `GET` would get a token for now.
    package private(set) var servable = 0
    /// Identities whose last refresh failed, whatever their state now.
    package private(set) var failing = 0
    /// Seconds until the soonest servable token expires.
    package internal(set) var soonestExpiry: Double?
    /// Shared sessions (SSO across apps): alive while any identity of it is.
    package internal(set) var activeSessions = 0
    package internal(set) var endedSessions = 0

    package init() {}

    package init(_ snapshots: some Sequence<TokenSnapshot>, at now: Date) {
        var sessions = SessionTally()
        for snapshot in snapshots {
            let expiry = Self.expiry(of: snapshot)
            let expired = expiry.map { $0 <= now } ?? false
            count(snapshot, expired: expired, by: 1)
            if let expiry, !expired {
                soonestExpiry = min(soonestExpiry ?? .infinity, expiry.timeIntervalSince(now))
            }
            sessions.count(snapshot, by: 1)
        }
        activeSessions = sessions.active
        endedSessions = sessions.ended
    }

    /// When the snapshot's state and servability change by themselves (its
    /// token expires), or nil if they do not depend on the time.
    static func expiry(of snapshot: TokenSnapshot) -> Date? {
        guard snapshot.condition != .corrupt, snapshot.accessToken != nil else { return nil }
        return snapshot.expiresAt
    }

    /// Adds (`delta` 1) or takes away (-1) one snapshot, before its expiry
    /// or after it. Its state is read through the snapshot's own
    /// ``TokenSnapshot/state(at:)`` at a time on that side of the expiry, so
    /// this count and `STATUS` can never disagree on what a state means.
    mutating func count(_ snapshot: TokenSnapshot, expired: Bool, by delta: Int) {
        let at = expired ? (snapshot.expiresAt ?? .distantFuture) : .distantPast
        total += delta
        let state = snapshot.state(at: at)
        let updated = byState[state, default: 0] + delta
        byState[state] = updated == 0 ? nil : updated
        if snapshot.failures > 0 { failing += delta }
        if !expired, snapshot.servableToken(at: at) != nil { servable += delta }
    }

    package subscript(state: IdentityState) -> Int {
        byState[state, default: 0]
    }

    /// `42 identities: 40 fresh, 1 stale, 1 reauth_required` (the systemd
    /// status line): "1 identity", "0 identities".
    package var summary: String {
        let order: [IdentityState] = [.fresh, .refreshing, .pending, .stale, .expired, .reauthRequired, .corrupt]
        let parts = order.compactMap { state in byState[state].map { "\($0) \(state.rawValue)" } }
        return "\(total) \(total == 1 ? "identity" : "identities")" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
    }
}

/// Members of each shared session, and how many of them are active.
struct SessionTally {
    private var groups: [String: (members: Int, active: Int)] = [:]
    private(set) var active = 0
    private(set) var ended = 0

    mutating func count(_ snapshot: TokenSnapshot, by delta: Int) {
        guard let group = snapshot.sessionGroup else { return }
        let before = groups[group] ?? (0, 0)
        var after = before
        after.members += delta
        if snapshot.condition == .active { after.active += delta }
        groups[group] = after.members == 0 ? nil : after
        func tell(_ value: (members: Int, active: Int), _ sign: Int) {
            guard value.members > 0 else { return }
            if value.active > 0 { active += sign } else { ended += sign }
        }
        tell(before, -1)
        tell(after, 1)
    }
}

extension TokenCache {
    /// The identities counted by state at `now`: what changed since the
    /// last call (tokens that expired meanwhile), not every identity.
    package func counts(at now: Date = Date()) -> StateCounts {
        withTally(at: now)
    }
}
