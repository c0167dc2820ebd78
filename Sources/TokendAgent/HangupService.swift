import ServiceLifecycle
import UnixSignals

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
