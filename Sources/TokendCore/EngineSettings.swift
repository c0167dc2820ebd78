/// Tunables of the refresh engine, with the defaults of docs/DESIGN.md.
/// The one place these defaults live: the configuration loader fills this
/// from `[refresh]` and the providers' `rate_limit`, the engine reads it.
package struct EngineSettings: Sendable {
    package var policy = RefreshPolicy()
    package var backoff = BackoffPolicy()
    /// Refreshes in flight at once, across all providers.
    package var maxConcurrentRefreshes = 16
    /// Refreshes started per second per provider (token bucket rate).
    package var providerRate: Double = 50
    /// Refreshes a provider may receive in a burst.
    package var providerBurst: Double = 50
    /// Per-provider rates overriding `providerRate` (burst: one second's worth).
    package var providerRates: [String: Double] = [:]
    /// How long a provider that rejected our client is left alone before
    /// the next try (a config reload retries at once).
    package var misconfiguredRetry: Double = 300
    /// Two refreshes of one identity start at least this far apart, whatever
    /// the token's lifetime and whoever asks, so no provider reply and no
    /// client can drive a hot loop.
    package var minimumRefreshInterval: Duration = .seconds(2)
    /// Pauses between attempts to store a refresh result the vault refused.
    package var commitRetryDelays: [Duration] = [.milliseconds(50), .milliseconds(250), .seconds(1)]
    /// On a fleet store, how soon a result the store refused is offered to
    /// it again (it must land while this agent's lease of it lasts).
    package var heldResultRetry: Duration = .milliseconds(250)
    /// The scheduler loop wakes at least this often, so its heartbeat (the
    /// systemd watchdog) keeps beating while nothing is due, and a wall
    /// clock that jumped while it slept (suspend, NTP step) is noticed.
    package var maximumSleep: Duration? = .seconds(30)

    package init() {}
}
