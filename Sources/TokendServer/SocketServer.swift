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
/// The ``FrontLoop`` accepts every connection and answers the requests that
/// need no waiting; a connection that needs more is handed to a
/// ``ConnectionHandler`` on a SwiftNIO event loop, where the others are
/// answered by ``RequestHandler`` in a task per request. Requests on a
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
    private let front: FrontLoop
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
        let listener: Int32
        if let descriptor = SocketBinding.systemdSocket() {
            try SocketBinding.requireListeningStreamSocket(descriptor)
            listener = descriptor
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
            listener = try SocketBinding.listen(staged, backlog: 512)
            do {
                try SocketBinding.applyPermissions(staged, mode: settings.mode, group: settings.group)
                guard rename(staged, settings.path) == 0 else {
                    throw SocketBinding.Failure(description: "cannot move the socket to \(settings.path): \(String(cString: strerror(errno)))")
                }
            } catch {
                unlink(staged)
                close(listener)
                throw error
            }
            ownsSocketFile = true
            logger.info("listening", metadata: ["tokend.socket.path": "\(settings.path)"])
        }
        do {
            front = try FrontLoop(listener: listener, environment: environment, registry: registry, settings: settings, logger: logger)
        } catch {
            if ownsSocketFile { unlink(settings.path) }
            throw error
        }
    }

    /// Connections open right now.
    package var connectionCount: Int { registry.count }

    package func run() async throws {
        onListening?()
        front.start()
        let front = front
        await withGracefulShutdownHandler {
            await front.finished.wait()
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        // Also when the socket loop ended for another reason: the
        // connections are told and drained the same way.
        if !shutdown.isFired { beginShutdown() }
        await front.finished.wait()
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
        front.stop()
        registry.announceShutdown()
    }
}
