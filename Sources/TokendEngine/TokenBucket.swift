import TokendCache
import TokendCore
/// A token bucket: at most `rate` refreshes per second per provider, with
/// bursts up to `burst`, so a restart with many due identities is spread
/// over time instead of flooding the provider.
struct TokenBucket<Instant: InstantProtocol> where Instant.Duration == Duration {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var updated: Instant

    init(rate: Double, burst: Double, now: Instant) {
        self.rate = max(rate, 0.001)
        self.burst = max(burst, 1)
        self.tokens = self.burst
        self.updated = now
    }

    /// Takes one token if there is one.
    mutating func take(now: Instant) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// When the next token will be there.
    func nextToken(now: Instant) -> Instant {
        let missing = max(0, 1 - tokens)
        return updated.advanced(by: WholeSeconds.duration(missing / rate))
    }

    private mutating func refill(now: Instant) {
        let elapsed = updated.duration(to: now)
        guard elapsed > .zero else { return }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(burst, tokens + seconds * rate)
        updated = now
    }
}
