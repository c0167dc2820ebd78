import CTokendSystem
import Foundation
import Logging
import ServiceLifecycle
import TokendConfig
import TokendCore
import TokendCache
import TokendEngine
import TokendProtocol
import TokendSystemd
import TokendProviders
import TokendServer
import TokendVault

/// The running agent: the composition root that wires configuration,
/// vault, providers and engine together under one `ServiceGroup`.
///
/// Start order: vault → providers → engine (loaded and planned) → services.
/// On SIGTERM or SIGINT the group shuts down gracefully: the scheduler stops
/// starting refreshes, those in flight finish and are committed, then the
/// HTTP client and the vault are closed.
package enum Agent {
    package struct Failure: Error, CustomStringConvertible {
        package var description: String

        package init(description: String) {
            self.description = description
        }
    }

    /// Runs until a termination signal, then returns.
    ///
    /// - Throws: ``VaultError`` (the vault cannot be opened), ``Failure``.
    /// - Parameter onReady: called once the agent serves (socket bound,
    ///   identities loaded, scheduler started).
    package static func run(
        configuration: TokendConfiguration, logger: Logger, onReady: @escaping @Sendable () -> Void = {}
    ) async throws {
        EarlyStop.trap()
        if !ProcessHardening.apply() {
            logger.warning("could not disable core dumps; token material could end up in a core file")
        }
        let store = try await AgentStore.open(configuration.vault, logger: logger)
        let http = ProviderHTTP(logger: logger.with(label: "tokend.http"))
        // One way out, whatever happened: the HTTP client and the vault are
        // closed once the services have stopped (or failed to start).
        var failure: (any Error)?
        do {
            let notifier = SystemdNotifier()
            let engine = try await startEngine(configuration, store: store, http: http, notifier: notifier, logger: logger)
            let group = try await serviceGroup(
                configuration, engine: engine, store: store, http: http, notifier: notifier, onReady: onReady, logger: logger)
            try await group.run()
            logger.info("tokend stopping: refreshes drained")
        } catch {
            failure = error
        }
        try? await http.shutdown()
        do { try await store.close() } catch { failure = failure ?? error }
        if let failure { throw failure }
        logger.info("tokend stopped")
    }

    /// The engine, with the declared identities in the vault and every
    /// identity loaded and planned.
    static func startEngine(
        _ configuration: TokendConfiguration, store: AgentStore, http: ProviderHTTP, notifier: SystemdNotifier, logger: Logger
    ) async throws -> RefreshEngine<ContinuousClock> {
        let providers = try ProviderFactory.make(configuration.providers, http: http)
        var settings = configuration.engine
        // A watchdog of a few microseconds must not make the loop spin.
        settings.maximumSleep = max(min(notifier.watchdogInterval ?? .seconds(30), .seconds(30)), .milliseconds(100))
        let engine = RefreshEngine(
            vault: store.vault, exclusion: store.exclusion, held: store.held, providers: providers,
            clock: ContinuousClock(), settings: settings,
            logger: logger.with(label: "tokend.engine"),
            // The watchdog is fed from the scheduler's own loop: if it
            // hangs, systemd restarts the agent.
            heartbeat: { notifier.watchdog() })
        try await engine.declare(configuration.identities.map(\.enrollment))
        let started = try await engine.start()
        // Loading decrypted every value into temporary buffers that are
        // freed now; give that memory back instead of keeping it mapped.
        _ = tokend_release_free_memory()
        logger.info(
            "tokend started",
            metadata: [
                "tokend.version": "\(TokendVersion.current)", "tokend.identities": "\(started.identities)",
                "tokend.providers": "\(providers.count)", "tokend.vault": "\(store.description)",
            ])
        return engine
    }

    /// The socket server and everything around the engine, as one group.
    static func serviceGroup(
        _ configuration: TokendConfiguration, engine: RefreshEngine<ContinuousClock>, store: AgentStore, http: ProviderHTTP,
        notifier: SystemdNotifier, onReady: @escaping @Sendable () -> Void, logger: Logger
    ) async throws -> ServiceGroup {
        let policy = AccessPolicy(admins: Self.admins(configuration))
        let tokenFiles = TokenFileService(
            identities: configuration.identities, cache: engine.cache, logger: logger.with(label: "tokend.files"))
        let audit = try configuration.auditLog.map { try AuditLog(path: $0) }
        let reloader = Reloader(
            path: configuration.file, http: http, engine: engine, policy: policy, tokenFiles: tokenFiles, audit: audit,
            logger: logger)
        let backend = AgentBackend(engine: engine) { () async throws(BackendError) -> Int in
            notifier.reloading()
            defer { notifier.ready(status: engine.cache.counts().summary) }
            return try await reloader.reload()
        }
        let server = try await SocketServer(
            settings: configuration.socket, backend: backend, policy: policy, audit: audit,
            logger: logger.with(label: "tokend.server"))
        let metrics = configuration.metrics.map { listener in
            MetricsService(listener: listener, cache: engine.cache, logger: logger.with(label: "tokend.metrics")) {
                server.connectionCount
            }
        }
        let earlyStop = EarlyStopService()
        var lifecycle = ServiceGroupConfiguration(
            services: [.init(service: earlyStop)] + (metrics.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []) + [
                .init(service: engine),
                .init(service: server),
                .init(service: NotifyService(notifier: notifier, cache: engine.cache, onReady: onReady)),
                .init(service: HangupService { _ = try? await backend.reload() }),
                .init(service: tokenFiles),
            ] + (store.listener.map { [.init(service: FleetFollowService(listener: $0, follower: engine))] } ?? []),
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger.with(label: "tokend.lifecycle"))
        // Services stop in reverse order (token files, notify, server,
        // engine); refreshes in flight are bounded by the request timeout,
        // and the whole drain by this.
        lifecycle.maximumGracefulShutdownDuration = .seconds(15)
        let group = ServiceGroup(configuration: lifecycle)
        earlyStop.attach(group)
        return group
    }
}

extension Agent {
    static func admins(_ configuration: TokendConfiguration) -> AccessPolicy.Admins {
        AccessPolicy.Admins(uids: Set(configuration.admins.uids), groups: configuration.admins.groups)
    }
}

extension Logger {
    /// A logger with the same handler settings under another label.
    func with(label: String) -> Logger {
        var copy = Logger(label: label)
        copy.logLevel = logLevel
        return copy
    }
}
