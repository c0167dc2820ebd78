import Foundation
import TokendCache
import TokendCore
import TokendEngine
import TokendProtocol
import TokendServer

/// The socket server's view of the agent: a thin translation onto the
/// engine, which owns the identities, and onto the reload the composition
/// root hands in.
package struct AgentBackend: ServerBackend {
    let engine: RefreshEngine<ContinuousClock>
    private let reloadConfiguration: @Sendable () async throws(BackendError) -> Int

    /// - Parameter reload: re-reads and applies the configuration; returns
    ///   the number of identities. Without it, `RELOAD` is refused.
    package init(
        engine: RefreshEngine<ContinuousClock>,
        reload: @escaping @Sendable () async throws(BackendError) -> Int = { () throws(BackendError) -> Int in
            throw BackendError(.badRequest, "this agent has no configuration file to reload")
        }
    ) {
        self.engine = engine
        self.reloadConfiguration = reload
    }

    package var cache: TokenCache { engine.cache }

    package func refresh(_ name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool) async -> RefreshOutcome {
        await engine.refresh(name, force: force, minimumTTL: minimumTTL, urgent: urgent)
    }

    package func enroll(_ request: EnrollRequest) async throws(BackendError) -> Int64 {
        let enrollment = request.enrollment(now: Date())
        do {
            if let source = request.from { return try await engine.join(enrollment, from: source) }
            return try await engine.enroll(enrollment)
        } catch {
            throw Self.backendError(error)
        }
    }

    package func remove(_ name: IdentityName, logout: Logout) async throws(BackendError) -> Bool {
        do {
            return try await engine.remove(name, logout: logout)
        } catch {
            throw Self.backendError(error)
        }
    }

    package func reload() async throws(BackendError) -> Int {
        try await reloadConfiguration()
    }

    package func sessionMembers(_ group: String) async -> [IdentityName] {
        await engine.sessionMembers(group)
    }

    package func statistics() async -> EngineStatistics {
        await engine.currentStatistics
    }

    /// The wire error for a refused change.
    static func backendError(_ error: IdentityChangeError) -> BackendError {
        switch error.kind {
        case .invalid: BackendError(.badRequest, error.message)
        case .notFound: BackendError(.notFound, error.message)
        case .providerFailed: BackendError(.unavailable, error.message)
        case .storage: BackendError(.internal, error.message)
        }
    }
}
