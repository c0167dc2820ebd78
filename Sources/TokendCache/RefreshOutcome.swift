import TokendCore

/// Counters for `STATS` and metrics.
package struct EngineStatistics: Sendable, Hashable {
    package var refreshes = 0
    package var failures = 0
    package var inFlight = 0
    package var queued = 0
    package var scheduled = 0
    /// Fleet store: tokens taken from another agent's commit, and refreshes
    /// not made because another agent held the identity.
    package var followed = 0
    package var heldElsewhere = 0

    package init() {}
}

/// What a caller of ``RefreshEngine/refresh(_:force:minimumTTL:)`` gets.
package enum RefreshOutcome: Sendable {
    /// The current snapshot after the refresh (or without one, when the
    /// token already had enough time left).
    case refreshed(TokenSnapshot)
    /// The refresh failed; the snapshot tells what can still be served.
    case failed(TokenSnapshot?, code: String, message: String, retryAfter: Double?)
    /// The grant is dead; an operator must re-enroll.
    case reauthRequired(TokenSnapshot?)
    case notFound
}
