import Foundation
import ServiceLifecycle
import TokendCore
import TokendCache

/// Keeps systemd informed: `READY=1` once the group runs (vault open,
/// socket bound, scheduler started), `STATUS=` when the counts by state
/// change (looked at every `interval`), `STOPPING=1` at shutdown.
package struct NotifyService<C: Clock>: Service where C.Duration == Duration {
    let notifier: SystemdNotifier
    let cache: TokenCache
    let clock: C
    let interval: Duration
    let onReady: @Sendable () -> Void

    package init(
        notifier: SystemdNotifier, cache: TokenCache, clock: C, interval: Duration = .seconds(5),
        onReady: @escaping @Sendable () -> Void
    ) {
        self.notifier = notifier
        self.cache = cache
        self.clock = clock
        self.interval = interval
        self.onReady = onReady
    }

    package func run() async throws {
        notifier.ready(status: cache.counts().summary)
        onReady()
        // Without systemd listening, the status line has no reader: the
        // agent stays idle. (Returning would end the whole service group:
        // wait for its end.)
        guard notifier.isActive else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await clock.sleep(for: interval)
                // The cache keeps its counts as tokens change, so this
                // costs what changed since the last look, not a walk over
                // every identity; an unchanged line is not sent again.
                notifier.statusIfChanged(cache.counts().summary)
            }
        }
        notifier.stopping()
    }
}

extension NotifyService where C == ContinuousClock {
    package init(notifier: SystemdNotifier, cache: TokenCache, onReady: @escaping @Sendable () -> Void) {
        self.init(notifier: notifier, cache: cache, clock: ContinuousClock(), onReady: onReady)
    }
}
