import Foundation
import ServiceLifecycle
import UnixSignals
import TokendCore
import TokendCache

/// Keeps systemd informed: `READY=1` once the group runs (vault open,
/// socket bound, scheduler started), `STATUS=` every few seconds,
/// `STOPPING=1` at shutdown.
struct NotifyService: Service {
    let notifier: SystemdNotifier
    let cache: TokenCache
    let onReady: @Sendable () -> Void

    func run() async throws {
        notifier.ready(status: cache.counts().summary)
        onReady()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                notifier.status(cache.counts().summary)
            }
        }
        notifier.stopping()
    }
}

/// Re-reads the configuration on SIGHUP, like the `RELOAD` verb.
struct HangupService: Service {
    let reload: @Sendable () async -> Void

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals { await reload() }
        }
    }
}
