import Logging
import TokendConfig
import TokendCore
import TokendCache
import TokendEngine
import TokendProviders
import TokendServer

/// Re-reads the configuration (SIGHUP, `RELOAD`) and applies it without
/// dropping connections or cached tokens: providers, admins, configured
/// identities (added, updated, removed) and token files. A file with
/// errors is rejected and the running configuration kept.
struct Reloader: Sendable {
    let path: String
    let http: ProviderHTTP
    let engine: RefreshEngine<ContinuousClock>
    let policy: AccessPolicy
    let tokenFiles: TokenFileService
    let audit: AuditLog?
    let logger: Logger

    func reload() async throws(BackendError) -> Int {
        let configuration: TokendConfiguration
        let providers: [String: any TokenProvider]
        do {
            configuration = try ConfigLoader.load(path: path)
            providers = try ProviderFactory.make(configuration.providers, http: http)
        } catch {
            logger.error("new configuration rejected; keeping the running one", metadata: ["tokend.error": "\(error)"])
            let first = String(describing: error).split(separator: "\n").first ?? ""
            throw BackendError(.badRequest, "configuration rejected, old one kept: \(first)")
        }
        policy.setAdmins(Agent.admins(configuration))
        do {
            try audit?.reopen()
        } catch {
            logger.error("cannot reopen the audit log; still writing to the old file", metadata: ["tokend.error": "\(error)"])
        }
        do {
            try await engine.reconfigure(providers: providers, declared: configuration.identities.map(\.enrollment))
        } catch {
            logger.error("cannot apply the configured identities", metadata: ["tokend.error": "\(error)"])
            throw BackendError(.internal, "providers reloaded, but the configured identities could not be applied; see the log")
        }
        tokenFiles.update(configuration.identities)
        logger.info("configuration reloaded", metadata: ["tokend.providers": "\(providers.count)"])
        return engine.cache.count
    }
}
