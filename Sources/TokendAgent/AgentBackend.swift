import Foundation
import Logging
import Synchronization
import TokendCore
import TokendEngine
import TokendProtocol
import TokendServer
import TokendVault

/// The socket server's view of the agent: engine, vault and providers.
package final class AgentBackend: ServerBackend {
    let engine: RefreshEngine<ContinuousClock>
    let vault: any VaultStore
    private let providers: Mutex<[String: any TokenProvider]>
    private let reloader: Mutex<(@Sendable () async throws(BackendError) -> Int)?>
    let logger: Logger

    package init(engine: RefreshEngine<ContinuousClock>, vault: any VaultStore, providers: [String: any TokenProvider], logger: Logger) {
        self.engine = engine
        self.vault = vault
        self.providers = Mutex(providers)
        self.reloader = Mutex(nil)
        self.logger = logger
    }

    package var cache: TokenCache { engine.cache }

    package func setProviders(_ new: [String: any TokenProvider]) {
        providers.withLock { $0 = new }
    }

    package func setReloader(_ reload: @escaping @Sendable () async throws(BackendError) -> Int) {
        reloader.withLock { $0 = reload }
    }

    package func refresh(_ name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool) async -> RefreshOutcome {
        await engine.refresh(name, force: force, minimumTTL: minimumTTL, urgent: urgent)
    }

    package func enroll(_ request: EnrollRequest) async throws(BackendError) -> Int64 {
        guard let provider = providers.withLock({ $0[request.provider] }) else {
            throw BackendError(.badRequest, "unknown provider \(request.provider)")
        }
        let enrollment = Enrollment(
            name: request.name, provider: request.provider, grant: request.grant, allowRules: request.allow,
            refreshAt: request.refreshAt, refreshToken: request.refreshToken, sessionID: request.sessionID,
            accessToken: request.accessToken, accessTokenExpiresAt: request.expiresIn.map { Date().addingTimeInterval(Double($0)) })
        if enrollment.grant == .session && !provider.supportsSessionAuthentication {
            throw BackendError(.badRequest, "provider \(request.provider) does not support the session grant")
        }
        do {
            let generation = try await vault.enroll(enrollment)
            guard let stored = try await vault.identity(named: request.name) else {
                throw BackendError(.internal, "identity \(request.name) vanished after enrollment")
            }
            await engine.enrolled(stored)
            return generation
        } catch let error as BackendError {
            throw error
        } catch {
            logger.error("enrollment failed", metadata: ["tokend.identity": "\(request.name)", "tokend.error": "\(error)"])
            throw BackendError(.internal, "the vault refused the enrollment; see the agent's log")
        }
    }

    package func remove(_ name: IdentityName, logout: Bool) async throws(BackendError) -> Bool {
        do {
            guard let stored = try await vault.identity(named: name) else { return false }
            if logout, let session = stored.secrets.sessionID {
                guard let provider = providers.withLock({ $0[stored.record.provider] }) else {
                    throw BackendError(.badRequest, "provider \(stored.record.provider) is not configured; cannot log out")
                }
                do {
                    try await provider.endSession(session)
                } catch let error as ProviderError {
                    // The session is still alive: keep the identity, so the
                    // operator can retry rather than lose the handle on it.
                    throw BackendError(.unavailable, "logout failed, identity kept: \(error.message)")
                }
            }
            let removed = try await vault.remove(name)
            await engine.removed(name)
            return removed
        } catch let error as BackendError {
            throw error
        } catch {
            logger.error("removal failed", metadata: ["tokend.identity": "\(name)", "tokend.error": "\(error)"])
            throw BackendError(.internal, "the vault refused the removal; see the agent's log")
        }
    }

    package func reload() async throws(BackendError) -> Int {
        guard let reload = reloader.withLock({ $0 }) else { throw BackendError(.internal, "reload is not available") }
        return try await reload()
    }

    package func statistics() async -> EngineStatistics {
        await engine.currentStatistics
    }
}
