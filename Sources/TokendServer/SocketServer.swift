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
/// One `NIOAsyncChannel` per connection in a discarding task group;
/// requests on a connection are answered in order (pipelining works); lines
/// are bounded, connections are counted and capped, idle ones are closed.
/// On graceful shutdown it stops accepting, lets requests in flight finish,
/// tells `WATCH` clients `ERR shutting_down`, and removes its socket file.
package final class SocketServer: Service, Sendable {
    typealias Connection = (channel: NIOAsyncChannel<Frame, ByteBuffer>, state: ConnectionState)

    /// Reply bytes queued per connection before the server stops answering
    /// (and reading) until the client reads.
    static let writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)

    let settings: SocketSettings
    let handler: RequestHandler
    let cache: TokenCache
    let logger: Logger
    let registry = ConnectionRegistry()
    let shutdown = ShutdownSignal()
    private let listening: NIOAsyncChannel<Connection, Never>
    private let ownsSocketFile: Bool
    private let onListening: (@Sendable () -> Void)?

    /// Binds (or adopts the systemd socket) now, so that errors surface at
    /// start and the socket exists before the agent reports ready.
    package init(
        settings: SocketSettings, backend: any ServerBackend, policy: AccessPolicy, audit: AuditLog? = nil,
        logger: Logger = Logger(label: "tokend.server"), onListening: (@Sendable () -> Void)? = nil
    ) async throws {
        self.settings = settings
        self.cache = backend.cache
        self.logger = logger
        self.onListening = onListening
        let registry = registry
        self.handler = RequestHandler(
            backend: backend, policy: policy, audit: audit, refreshWait: settings.refreshWait,
            connections: { registry.count }, logger: logger)
        let idle = settings.idleTimeout
        let limit = settings.maxConnections
        let handler = handler
        let shutdown = shutdown
        let cache = backend.cache
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Connection> = { channel in
            // The peer as it connected, before anything else runs: its
            // process may exit, and its pid be reused, right after. Its
            // process is looked up only while some identity has a `unit:`
            // rule (reading /proc costs more than the rest of an accept).
            PeerCredentials.read(from: channel, process: cache.usesUnitRules).map(Optional.some).recover { _ in nil }
                .flatMapThrowing { peer in
                    let state = ConnectionState(channel: channel, connectedPeer: peer)
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(ByteToMessageHandler(LineFrameDecoder(maximumLength: RequestParser.maximumLineLength)))
                    try operations.addHandler(IdleStateHandler(readTimeout: TimeAmount(idle)))
                    try operations.addHandler(IdleCloser(state: state))
                    try operations.addHandler(FastPathHandler(state: state, handler: handler, shutdown: shutdown))
                    let connection = (try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel), state)
                    // Admitted here, on the event loop, before its first
                    // byte is read: a client that connects for one request
                    // (socat, a shell script, `tokend get`) is answered on
                    // the fast path too. Refusals are the async side's job.
                    // Registered before the shutdown check: a shutdown that
                    // fires in between closes it with the other idle ones.
                    if let peer, registry.add(state, limit: limit) {
                        if shutdown.isFired { registry.remove(state) } else { state.admit(peer) }
                    }
                    return connection
                }
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 512)
            // `printf 'GET x\n' | socat - UNIX-CONNECT:...` shuts down its
            // write side after the request: answer it before closing.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            // What one connection may have queued for a client that does
            // not read (see FastPathHandler).
            .childChannelOption(.writeBufferWaterMark, value: Self.writeBufferWaterMark)
        if let descriptor = SocketBinding.systemdSocket() {
            listening = try await bootstrap.bind(descriptor, childChannelInitializer: initializer)
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
            listening = try await bootstrap.bind(unixDomainSocketPath: staged, childChannelInitializer: initializer)
            do {
                try SocketBinding.applyPermissions(staged, mode: settings.mode, group: settings.group)
                guard rename(staged, settings.path) == 0 else {
                    throw SocketBinding.Failure(description: "cannot move the socket to \(settings.path): \(String(cString: strerror(errno)))")
                }
            } catch {
                unlink(staged)
                try? await listening.channel.close()
                throw error
            }
            ownsSocketFile = true
            logger.info("listening", metadata: ["tokend.socket.path": "\(settings.path)"])
        }
    }

    /// Connections open right now.
    package var connectionCount: Int { registry.count }

    package func run() async throws {
        onListening?()
        let listening = listening
        try await withGracefulShutdownHandler {
            try await listening.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        if ownsSocketFile { unlink(settings.path) }
        logger.info("socket server stopped")
    }

    /// Stops accepting, closes idle connections, ends `WATCH` streams.
    package func beginShutdown() {
        shutdown.fire()
        listening.channel.close(promise: nil)
        registry.closeIdle()
    }

    private func serve(_ connection: Connection) async {
        let (channel, state) = connection
        guard let peer = state.peer else {
            // Not admitted when it was accepted: say why, and close.
            if state.connectedPeer == nil {
                logger.warning("cannot read peer credentials; closing")
                try? await channel.channel.close()
                return
            }
            let reply = shutdown.isFired ? Reply.error(.shuttingDown, "agent is stopping") : Reply.error(.busy, "too many connections")
            try? await channel.executeThenClose { _, outbound in
                try await outbound.write(ByteBuffer(string: reply.line))
            }
            return
        }
        defer { registry.remove(state) }
        do {
            try await channel.executeThenClose { inbound, outbound in
                for try await frame in inbound {
                    state.busy.store(true, ordering: .relaxed)
                    defer {
                        state.busy.store(false, ordering: .relaxed)
                        // After the reply was written: the fast path may answer again.
                        state.pendingAsync.wrappingSubtract(1, ordering: .acquiringAndReleasing)
                    }
                    guard case .request(let request) = frame else {
                        try await outbound.write(ByteBuffer(string: Reply.error(.tooLong, "request line over \(RequestParser.maximumLineLength) bytes").line))
                        return
                    }
                    let outcome = await handler.handle(request, peer: peer)
                    switch outcome {
                    case .reply(let reply):
                        try await outbound.write(ByteBuffer(string: reply.line))
                    case .close(let reply):
                        try await outbound.write(ByteBuffer(string: reply.line))
                        return
                    case .watch(let name, let first):
                        try await outbound.write(ByteBuffer(string: first.line))
                        state.watching.store(true, ordering: .relaxed)
                        state.busy.store(false, ordering: .relaxed)
                        await watch(name, first: first, peer: peer, channel: channel.channel, outbound: outbound)
                        return
                    }
                    if shutdown.isFired { return }
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["tokend.error": "\(error)"])
        }
    }

    /// Pushes a line on every change of the identity until the client goes
    /// away, the identity goes away, or the agent stops.
    private func watch(
        _ name: IdentityName, first: Reply, peer: PeerCredentials, channel: any Channel,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async {
        let updates = cache.watch(name)
        let handler = handler
        let shutdown = shutdown
        let cache = cache
        /// Access is decided again before every line: the rules, the
        /// admins or the peer's groups may have changed since the last one.
        @Sendable func revoked(_ snapshot: TokenSnapshot?) async -> Bool {
            guard let snapshot else {
                try? await outbound.write(ByteBuffer(string: Reply.error(.forbidden, "identity \(name) was removed").line))
                channel.close(promise: nil)
                return true
            }
            // The rules as they are now, not as the buffered update had them.
            let rules = cache.snapshot(name)?.allowRules ?? snapshot.allowRules
            guard handler.policy.mayRead(rules, peer: peer) else {
                handler.audit?.record(peer: peer, verb: "WATCH", identity: name, result: "forbidden")
                try? await outbound.write(
                    ByteBuffer(string: Reply.error(.forbidden, "identity not permitted for uid \(peer.uid)").line))
                channel.close(promise: nil)
                return true
            }
            return false
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var last = first
                for await update in updates {
                    if await revoked(update) { return }
                    guard let snapshot = update else { return }
                    // Only changes of what a GET would answer, not of the
                    // seconds counter or of internal bookkeeping.
                    let reply = handler.tokenReply(snapshot, peer: peer, verb: "WATCH")
                    guard !Self.sameAnswer(reply, last) else { continue }
                    last = reply
                    try? await outbound.write(ByteBuffer(string: reply.line))
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    await handler.policy.nextChange()
                    if Task.isCancelled { return }
                    if await revoked(cache.snapshot(name)) { return }
                }
            }
            group.addTask { try? await channel.closeFuture.get() }
            group.addTask {
                await shutdown.wait()
                guard shutdown.isFired else { return }
                try? await outbound.write(ByteBuffer(string: Reply.error(.shuttingDown, "agent is stopping").line))
                channel.close(promise: nil)
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Two replies carry the same token (or the same error), whatever the
    /// remaining seconds say.
    static func sameAnswer(_ a: Reply, _ b: Reply) -> Bool {
        switch (a, b) {
        case (.ok(let x), .ok(let y)): x.first == y.first && x.count == y.count
        case (.error(let x, _, _), .error(let y, _, _)): x == y
        default: false
        }
    }
}
