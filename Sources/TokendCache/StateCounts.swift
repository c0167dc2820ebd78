import Foundation
import TokendCore

/// How many identities are in each state, counted in one place for `STATS`,
/// the systemd status line and the metrics, so the three always agree.
package struct StateCounts: Sendable, Hashable {
    package private(set) var byState: [IdentityState: Int] = [:]
    package private(set) var total = 0
    /// Identities a `GET` would get a token for now.
    package private(set) var servable = 0
    /// Identities whose last refresh failed, whatever their state now.
    package private(set) var failing = 0
    /// Seconds until the soonest servable token expires.
    package private(set) var soonestExpiry: Double?
    /// Shared sessions (SSO across apps): alive while any identity of it is.
    package private(set) var activeSessions = 0
    package private(set) var endedSessions = 0

    package init(_ snapshots: some Sequence<TokenSnapshot>, at now: Date) {
        var sessions: [String: Bool] = [:]
        for snapshot in snapshots {
            total += 1
            byState[snapshot.state(at: now), default: 0] += 1
            if snapshot.failures > 0 { failing += 1 }
            if snapshot.servableToken(at: now) != nil {
                servable += 1
                if let expiresAt = snapshot.expiresAt {
                    soonestExpiry = min(soonestExpiry ?? .infinity, expiresAt.timeIntervalSince(now))
                }
            }
            if let group = snapshot.sessionGroup {
                sessions[group] = (sessions[group] ?? false) || snapshot.condition == .active
            }
        }
        activeSessions = sessions.values.count { $0 }
        endedSessions = sessions.count - activeSessions
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

extension TokenCache {
    /// The identities counted by state at `now`.
    package func counts(at now: Date = Date()) -> StateCounts {
        // Counted in place: copying 100,000 snapshots out first costs more
        // than the count itself.
        withTable { StateCounts($0.values, at: now) }
    }
}
