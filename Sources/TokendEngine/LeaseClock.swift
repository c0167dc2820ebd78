import Synchronization

/// Until when, by this host's monotonic clock, the agent may still count on
/// its lease of an identity: from just before the grant (or a renewal) was
/// asked for, its lifetime less a margin. The store's clock may run a
/// little apart, and a provider call takes a moment to leave the host.
///
/// Why: an agent stopped (SIGSTOP, a VM pause) between its grant and the
/// provider call would otherwise resume and send a refresh token that
/// another agent, granted the lease meanwhile, is spending. This narrows
/// that to a stop in the instant between this check and the send, which
/// no design can rule out: the provider takes no fence.
final class LeaseClock: Sendable {
    static let ranOut =
        "the lease of the identity may have run out before the provider call (this agent was stopped or cut off); "
        + "not sent, another agent may hold it now"

    private let lifetime: Duration
    private let validUntil: Mutex<ContinuousClock.Instant>

    /// Starts counting now, just before the grant is asked for.
    init(_ lifetime: Duration) {
        self.lifetime = lifetime
        validUntil = Mutex(ContinuousClock.now + Self.usable(lifetime))
    }

    /// A renewal asked for at `asked` succeeded.
    func renewed(at asked: ContinuousClock.Instant) {
        let until = asked + Self.usable(lifetime)
        validUntil.withLock { $0 = max($0, until) }
    }

    var isHeld: Bool { ContinuousClock.now < validUntil.withLock { $0 } }

    /// The lifetime less a quarter of it, at most 2 s.
    private static func usable(_ lifetime: Duration) -> Duration {
        lifetime - min(lifetime / 4, .seconds(2))
    }
}
