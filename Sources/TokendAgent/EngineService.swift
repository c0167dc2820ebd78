import ServiceLifecycle
import TokendCache
import TokendEngine

/// The refresh engine's scheduler loop as a ``Service``: it runs until the
/// group shuts down gracefully, then lets refreshes in flight finish.
struct EngineService<C: Clock>: Service where C.Duration == Duration {
    let engine: RefreshEngine<C>

    func run() async throws {
        await cancelWhenGracefulShutdown { await engine.run() }
    }
}
