import Foundation
import Logging
import Metrics
import Prometheus
import TokendConfig
import TokendCore
import TokendCache
import TokendEngine
import ServiceLifecycle
import TokendLoopbackHTTP

/// Serves `GET /metrics` in the Prometheus text format. Gauges that describe
/// the whole table (identities by state, soonest expiry, connections) are
/// computed at scrape time from the token cache; counters and the refresh
/// latency histogram are kept by the engine and the server as they go.
enum MetricsEndpoint {
    static let registry = PrometheusMetricsFactory.defaultRegistry

    static func start(
        _ listener: MetricsListener, cache: TokenCache, connections: @escaping @Sendable () -> Int
    ) async throws -> LoopbackHTTPServer {
        let handler: LoopbackHTTPServer.Handler = { request in
            guard request.method == .GET, request.path.split(separator: "?").first == "/metrics" else {
                return .respond(status: 404, headers: [("Content-Type", "text/plain")], body: Data("see /metrics\n".utf8))
            }
            updateGauges(cache: cache, connections: connections())
            return .respond(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: Data(registry.emitToBuffer()))
        }
        // Every local user can reach the listener: an idle connection goes
        // after 10 s (docs/operations.md).
        var limits = LoopbackHTTPServer.Limits()
        limits.idleTimeout = .seconds(10)
        switch listener {
        case .tcp(let host, let port):
            return try await LoopbackHTTPServer.start(host: host, port: port, limits: limits, handler: handler)
        case .unix(let path):
            return try await LoopbackHTTPServer.start(unixSocketPath: path, limits: limits, handler: handler)
        }
    }

    static func updateGauges(cache: TokenCache, connections: Int) {
        let counts = cache.counts()
        for state in IdentityState.allCases {
            Gauge(label: "tokend_identities", dimensions: [("state", state.rawValue)]).record(counts[state])
        }
        Gauge(label: "tokend_connections").record(connections)
        Gauge(label: "tokend_sessions", dimensions: [("state", "active")]).record(counts.activeSessions)
        Gauge(label: "tokend_sessions", dimensions: [("state", "ended")]).record(counts.endedSessions)
        Gauge(label: "tokend_soonest_expiry_seconds").record(counts.soonestExpiry ?? 0)
    }
}

/// The metrics listener as a service. Metrics are an extra: if the address
/// cannot be bound (another process took the port first), the agent runs
/// without them, says so, and tries again every `retry` until it gets it.
final class MetricsService: Service, Sendable {
    let listener: MetricsListener
    let cache: TokenCache
    let logger: Logger
    let retry: Duration
    let connections: @Sendable () -> Int

    init(
        listener: MetricsListener, cache: TokenCache, logger: Logger, retry: Duration = .seconds(30),
        connections: @escaping @Sendable () -> Int
    ) {
        self.listener = listener
        self.cache = cache
        self.logger = logger
        self.retry = retry
        self.connections = connections
    }

    func run() async throws {
        var server: LoopbackHTTPServer? = nil
        var failures = 0
        while server == nil, !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                server = try await MetricsEndpoint.start(listener, cache: cache, connections: connections)
                logger.info("serving metrics", metadata: ["tokend.metrics.listen": "\(listener)"])
            } catch {
                failures += 1
                if failures == 1 {
                    logger.error(
                        "cannot listen for metrics; running without them and retrying",
                        metadata: ["tokend.metrics.listen": "\(listener)", "tokend.error": "\(error)"])
                }
                let retry = retry
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: retry) }
            }
        }
        guard let server else { return }
        try? await gracefulShutdown()
        await server.shutdown()
    }
}
