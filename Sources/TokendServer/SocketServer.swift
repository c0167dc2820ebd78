import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TokendCore
import TokendCache
import TokendProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The Unix socket server of protocol v1, as a ``Service``.
///
/// Each connection is a ``ConnectionHandler`` on its event loop, with no
/// task of its own: requests that need no waiting are answered there, the
/// others by ``RequestHandler`` in a task per request. Requests on a
/// connection are answered in order (pipelining works); lines are bounded,
/// connections are counted and capped, idle ones are closed. On graceful
/// shutdown it stops accepting, lets requests in flight finish, tells
/// `WATCH` clients `ERR shutting_down`, and removes its socket file.
package final class SocketServer: Service, Sendable {
    /// Reply bytes queued per connection before the server stops answering
    /// (and reading) until the client reads.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)

    let settings: SocketSettings
    let handler: RequestHandler
    let logger: Logger
    let registry = ConnectionRegistry()
    let shutdown = ShutdownSignal()
    private let listening: any Channel
    private let ownsSocketFile: Bool
    private let onListening: (@Sendable () -> Void)?

    /// Binds (or adopts the systemd socket) now, so that errors surface at
    /// start and the socket exists before the agent reports ready.
    package init(
        settings: SocketSettings, backend: any ServerBackend, policy: AccessPolicy, audit: AuditLog? = nil,
        logger: Logger = Logger(label: "tokend.server"), onListening: (@Sendable () -> Void)? = nil
    ) async throws {
        self.settings = settings
        self.logger = logger
        self.onListening = onListening
        let registry = registry
        self.handler = RequestHandler(
            backend: backend, policy: policy, audit: audit, refreshWait: settings.refreshWait,
            connections: { registry.count }, logger: logger)
        let environment = ConnectionEnvironment(
            handler: handler, cache: backend.cache, shutdown: shutdown,
            idleTimeout: TimeAmount(settings.idleTimeout), logger: logger)
        let shutdown = shutdown
        let cache = backend.cache
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            // The peer as it connected, before anything else runs: its
            // process may exit, and its pid be reused, right after. Its
            // process is looked up only while some identity has a `unit:`
            // rule (reading /proc costs more than the rest of an accept).
            PeerCredentials.read(from: channel, process: cache.usesUnitRules).map(Optional.some).recover { _ in nil }
                .flatMapThrowing { peer in
                    let admission = Self.admit(peer, channel: channel, registry: registry, shutdown: shutdown, settings: settings)
                    // Set here rather than as bootstrap child options,
                    // which cost a chain of futures per accepted connection.
                    if let options = channel.syncOptions {
                        // `printf 'GET x\n' | socat - UNIX-CONNECT:...` shuts
                        // down its write side after the request: answer it
                        // before closing.
                        try options.setOption(.allowRemoteHalfClosure, value: true)
                        // What one connection may have queued for a client
                        // that does not read (see ConnectionHandler).
                        try options.setOption(.writeBufferWaterMark, value: Self.writeBufferWaterMark)
                    }
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(environment: environment, admission: admission))
                }
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer(initializer)
            .serverChannelOption(.backlog, value: 512)
            // Clients that connect for one request come in bursts: take up
            // to 16 per wake-up rather than NIO's default 4.
            .serverChannelOption(.maxMessagesPerRead, value: 16)
        if let descriptor = SocketBinding.systemdSocket() {
            listening = try await bootstrap.withBoundSocket(descriptor).get()
            ownsSocketFile = false
            logger.info("listening on the socket passed by systemd", metadata: ["tokend.socket.fd": "\(descriptor)"])
        } else {
            try SocketBinding.clear(settings.path)
            // Bound in a private (0700) staging directory, given its mode and
            // group there, then renamed into place: no moment in which others
            // could connect to it with the wrong permissions, and no change
            // of the process-wide umask (which would race with every other
            // file the process creates meanwhile).
            let staging = try SocketBinding.stagingDirectory(for: settings.path)
            defer { rmdir(staging) }
            let staged = staging + "/s"
            listening = try await bootstrap.bind(unixDomainSocketPath: staged).get()
            do {
                try SocketBinding.applyPermissions(staged, mode: settings.mode, group: settings.group)
                guard rename(staged, settings.path) == 0 else {
                    throw SocketBinding.Failure(description: "cannot move the socket to \(settings.path): \(String(cString: strerror(errno)))")
                }
            } catch {
                unlink(staged)
                try? await listening.close()
                throw error
            }
            ownsSocketFile = true
            logger.info("listening", metadata: ["tokend.socket.path": "\(settings.path)"])
        }
    }

    /// Admits a connection on its event loop, before its first byte is
    /// read. Registered before the shutdown check: a shutdown that fires
    /// after it is announced to it, or, if the channel closes before its
    /// handler sees the announcement, its close removes it.
    private static func admit(
        _ peer: PeerCredentials?, channel: any Channel, registry: ConnectionRegistry, shutdown: ShutdownSignal,
        settings: SocketSettings
    ) -> Admission {
        guard let peer else { return .unknownPeer }
        do {
            try registry.add(channel, uid: peer.uid, limit: settings.maxConnections, perUID: settings.maxConnectionsPerUID)
            // Removed when it closes, however it closes: a channel closed
            // before it became active never sees `channelInactive`.
            channel.closeFuture.whenComplete { _ in registry.remove(channel) }
        } catch {
            switch error {
            case .full: return .refused(.error(.busy, "too many connections"))
            case .uidFull: return .refused(.error(.busy, "too many connections from uid \(peer.uid)"))
            }
        }
        guard !shutdown.isFired else {
            registry.remove(channel)
            return .refused(.error(.shuttingDown, "agent is stopping"))
        }
        return .admitted(peer)
    }

    /// Connections open right now.
    package var connectionCount: Int { registry.count }

    package func run() async throws {
        onListening?()
        let listening = listening
        await withGracefulShutdownHandler {
            try? await listening.closeFuture.get()
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        // Also when the listening socket closed for another reason: the
        // connections are told and drained the same way.
        if !shutdown.isFired { beginShutdown() }
        // Requests in flight are answered, watchers told, before we return;
        // if the agent's drain time runs out first, the rest are closed.
        let registry = registry
        await withTaskCancellationHandler {
            await registry.waitUntilEmpty()
        } onCancel: {
            registry.closeAll()
        }
        if ownsSocketFile { unlink(settings.path) }
        logger.info("socket server stopped")
    }

    /// Stops accepting, closes idle connections, ends `WATCH` streams.
    package func beginShutdown() {
        shutdown.fire()
        listening.close(promise: nil)
        registry.announceShutdown()
    }
}
