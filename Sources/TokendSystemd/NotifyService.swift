import Foundation
import ServiceLifecycle
import TokendCore
import TokendCache

/// Keeps systemd informed: `READY=1` once the group runs (vault open,
/// socket bound, scheduler started), `STATUS=` every few seconds,
/// `STOPPING=1` at shutdown.
package struct NotifyService: Service {
    let notifier: SystemdNotifier
    let cache: TokenCache
    let onReady: @Sendable () -> Void

    package init(notifier: SystemdNotifier, cache: TokenCache, onReady: @escaping @Sendable () -> Void) {
        self.notifier = notifier
        self.cache = cache
        self.onReady = onReady
    }

    package func run() async throws {
        notifier.ready(status: cache.counts().summary)
        onReady()
        // Without systemd listening, the status line has no reader: the
        // agent stays idle instead of counting every identity each 5 s.
        // (Returning would end the whole service group: wait for its end.)
        guard notifier.isActive else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                notifier.status(cache.counts().summary)
            }
        }
        notifier.stopping()
    }
}
