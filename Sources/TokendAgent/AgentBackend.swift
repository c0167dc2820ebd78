import Foundation
import Logging
import Synchronization
import TokendCore
import TokendCache
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
        if let source = request.from { return try await join(request, from: source, provider: provider) }
        let enrollment = Enrollment(
            name: request.name, provider: request.provider, grant: request.grant, allowRules: request.allow,
            refreshAt: request.refreshAt, refreshToken: request.refreshToken, sessionID: request.sessionID,
            accessToken: request.accessToken, accessTokenExpiresAt: request.expiresIn.map { Date().addingTimeInterval(Double($0)) })
        if enrollment.grant == .session && !provider.supportsSessionAuthentication {
            throw BackendError(.badRequest, "provider \(request.provider) does not support the session grant")
        }
        return try await vaultOperation("enrollment", of: request.name) {
            let generation = try await vault.enroll(enrollment)
            try await load(request.name)
            return generation
        }
    }

    /// `ENROLL <name> provider=<p> from=<source>`: another app of the same
    /// tenant joins the source's session, which never leaves the vault.
    private func join(_ request: EnrollRequest, from source: IdentityName, provider: any TokenProvider) async throws(BackendError) -> Int64 {
        try await vaultOperation("enrollment", of: request.name) {
            guard let original = try await vault.identity(named: source) else {
                throw BackendError(.notFound, "no identity \(source)")
            }
            guard original.secrets.sessionID != nil else {
                throw BackendError(.badRequest, "identity \(source) has no session to share")
            }
            let sourceProvider = providers.withLock { $0[original.record.provider] }
            guard let scope = provider.sessionScope, scope == sourceProvider?.sessionScope else {
                throw BackendError(
                    .badRequest,
                    "providers \(request.provider) and \(original.record.provider) are not apps of one Transmit tenant "
                        + "(the same base_url); a session cannot be shared between them")
            }
            let enrollment = Enrollment(
                name: request.name, provider: request.provider, grant: .session, allowRules: request.allow,
                refreshAt: request.refreshAt)
            let (generation, group) = try await vault.joinSession(enrollment, from: source)
            await engine.sessionShared(source, group: group)
            try await load(request.name)
            logger.info(
                "identity joined a shared session",
                metadata: ["tokend.identity": "\(request.name)", "tokend.session.from": "\(source)", "tokend.session": "\(group)"])
            return generation
        }
    }

    /// Hands a newly written identity to the engine, as the vault has it.
    private func load(_ name: IdentityName) async throws {
        guard let stored = try await vault.identity(named: name) else {
            throw BackendError(.internal, "identity \(name) vanished after enrollment")
        }
        await engine.enrolled(stored)
    }

    /// Runs a vault-backed admin operation: its own refusals pass as they
    /// are; a storage failure is logged and answered as `internal`, without
    /// its details (which stay in the agent's log).
    private func vaultOperation<T>(_ what: String, of name: IdentityName, _ body: () async throws -> T) async throws(BackendError) -> T {
        do {
            return try await body()
        } catch let error as BackendError {
            throw error
        } catch {
            logger.error("\(what) failed", metadata: ["tokend.identity": "\(name)", "tokend.error": "\(error)"])
            throw BackendError(.internal, "the vault refused the \(what); see the agent's log")
        }
    }

    package func remove(_ name: IdentityName, logout: Logout) async throws(BackendError) -> Bool {
        try await vaultOperation("removal", of: name) {
            guard let stored = try await vault.identity(named: name) else { return false }
            var others: [IdentityName] = []
            if let group = stored.record.sessionGroup { others = await engine.sessionMembers(group).filter { $0 != name } }
            if logout == .session, !others.isEmpty {
                throw BackendError(
                    .badRequest,
                    "the session of \(name) is shared with \(others.map(\.rawValue).joined(separator: ", ")); "
                        + "logout=all ends it for all of them")
            }
            if logout != .none, let session = stored.secrets.sessionID {
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
            if logout == .sharedSession, let group = stored.record.sessionGroup, !others.isEmpty {
                await engine.sessionEnded(group, by: name)
                logger.warning(
                    "shared session ended by an admin; its other identities need re-enrollment",
                    metadata: ["tokend.identity": "\(name)", "tokend.session.identities": "\(others.map(\.rawValue).joined(separator: ","))"])
            }
            return removed
        }
    }

    package func reload() async throws(BackendError) -> Int {
        guard let reload = reloader.withLock({ $0 }) else { throw BackendError(.internal, "reload is not available") }
        return try await reload()
    }

    package func sessionMembers(_ group: String) async -> [IdentityName] {
        await engine.sessionMembers(group)
    }

    package func statistics() async -> EngineStatistics {
        await engine.currentStatistics
    }
}
