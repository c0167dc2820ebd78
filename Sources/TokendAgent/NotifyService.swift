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
        notifier.ready(status: Self.summary(cache))
        onReady()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                notifier.status(Self.summary(cache))
            }
        }
        notifier.stopping()
    }

    /// `42 identities: 40 fresh, 1 stale, 1 reauth_required`
    static func summary(_ cache: TokenCache) -> String {
        let now = Date()
        var counts: [IdentityState: Int] = [:]
        for snapshot in cache.all() { counts[snapshot.state(at: now), default: 0] += 1 }
        return summary(counts)
    }

    /// The status line for these counts: "1 identity", "2 identities", "0 identities".
    static func summary(_ counts: [IdentityState: Int]) -> String {
        let total = counts.values.reduce(0, +)
        let order: [IdentityState] = [.fresh, .refreshing, .pending, .stale, .expired, .reauthRequired, .corrupt]
        let parts = order.compactMap { state in counts[state].map { "\($0) \(state.rawValue)" } }
        return "\(total) \(total == 1 ? "identity" : "identities")" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
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
