import CTokendSystem
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TokendCore
import TokendProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The socket's front: one thread and one `epoll` loop that accepts every
/// connection, admits it, and answers the requests that need no waiting
/// (`PING`, `HELLO`, a `GET` of a valid token: nearly all of them) with one
/// `read` and one `write` per batch of lines, and no allocation but the
/// reply's fields.
///
/// A connection leaves the front for a SwiftNIO channel with a
/// ``ConnectionHandler`` the moment it needs more than that: a request that
/// waits (a refresh, the vault, `STATUS`, `LIST`, `WATCH`...), a line the
/// front does not answer (malformed, too long), or a reply the kernel would
/// not take at once (a client that does not read). It carries the bytes
/// not yet answered and the reply bytes not yet sent, so the order of
/// replies and every rule of ``ConnectionHandler`` (backpressure, half-close,
/// shutdown) hold from there. The front keeps no request in flight, so it
/// can close its own connections at once when the agent stops.
///
/// The loop's state is touched only on its thread; ``stop()`` is the one
/// call from outside (an atomic flag and an `eventfd`).
final class FrontLoop: @unchecked Sendable {
    /// Reply bytes answered in one pass before they are written, so that a
    /// client pipelining thousands of `GET`s is answered in slices.
    static let outputSlice = 64 * 1024
    static let readSize = 64 * 1024
    /// A pause in accepting while the process is out of descriptors, or the
    /// loop would wake for the waiting connection again and again.
    static let acceptPause: UInt64 = 100_000_000

    private final class Connection {
        let descriptor: Int32
        let id: ConnectionRegistry.ID
        let peer: PeerCredentials
        /// The start of a line not yet complete.
        var partial: [UInt8] = []
        var lastInput: UInt64

        init(descriptor: Int32, id: ConnectionRegistry.ID, peer: PeerCredentials, now: UInt64) {
            self.descriptor = descriptor
            self.id = id
            self.peer = peer
            self.lastInput = now
        }
    }

    private let listener: Int32
    private let epoll: Int32
    private let wake: Int32
    private let environment: ConnectionEnvironment
    /// The environment's, held apart: it is called for every request.
    private let handler: RequestHandler
    private let registry: ConnectionRegistry
    private let settings: SocketSettings
    private let idleTimeout: UInt64
    /// Nanoseconds the loop polls before it sleeps, after a pass that
    /// answered the one connection the loop holds ([socket] busy_poll_us).
    /// A client that sends its requests one after another waits for each
    /// reply and then for the agent's thread to wake: on a virtual machine
    /// that wake-up is most of the round trip (p50 about 80-110 µs here
    /// against about 22-30 µs with polling; docs/performance.md). Polling
    /// only with a single connection keeps a busy agent from taking the
    /// core its many clients need; the bound keeps an idle one at zero,
    /// and its cap (200 µs) what a peer sending just under it can cost.
    private let busyPoll: UInt64
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// Fired once the loop has closed the listener and its connections.
    let finished = ShutdownSignal()

    /// Indexed by descriptor.
    private var connections: [Connection?] = []
    private var open = 0
    /// No connection can have been idle for the timeout before this time
    /// (a lower bound: input only moves a connection's deadline later).
    private var nextIdleCheck: UInt64?
    private var acceptPausedUntil: UInt64?
    /// Accepting failed (said once, until it works again).
    private var acceptFailing = false
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FrontLoop.readSize, alignment: 16)
    private var output: [UInt8] = []
    private let prepared = PreparedReplies()
    /// The current pass answered a request: only then is the next one
    /// polled for (an accept, or bytes of an unfinished line, is not).
    private var answeredInPass = false

    /// Takes ownership of `listener`, a listening Unix socket.
    init(
        listener: Int32, environment: ConnectionEnvironment, registry: ConnectionRegistry, settings: SocketSettings,
        logger: Logger
    ) throws {
        self.listener = listener
        self.environment = environment
        self.handler = environment.handler
        self.registry = registry
        self.settings = settings
        self.idleTimeout = Self.nanoseconds(settings.idleTimeout)
        self.busyPoll = Self.nanoseconds(settings.busyPoll)
        self.logger = logger
        output.reserveCapacity(Self.outputSlice + 2 * RequestParser.maximumLineLength)
        let flags = fcntl(listener, F_GETFL)
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wake = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        // On failure every property is set, so deinit runs and closes what
        // was opened: nothing is released here as well.
        guard flags >= 0, fcntl(listener, F_SETFL, flags | O_NONBLOCK) == 0, epoll >= 0, wake >= 0,
            tokend_epoll_watch(epoll, EPOLL_CTL_ADD, wake, EPOLLIN.rawValue) == 0,
            tokend_epoll_watch(epoll, EPOLL_CTL_ADD, listener, EPOLLIN.rawValue) == 0
        else {
            throw SocketBinding.Failure(description: "cannot set up the socket loop: \(String(cString: strerror(errno)))")
        }
    }

    /// The loop's thread holds the loop until it returns, and ``stop()``'s
    /// callers hold it too: closing `epoll` and `wake` only here means no
    /// late ``stop()`` writes to a number another file has since been given.
    deinit {
        // The loop closes the listener when it ends; one never started did not.
        if !started.load(ordering: .relaxed) { close(listener) }
        for descriptor in [epoll, wake] where descriptor >= 0 { close(descriptor) }
        readBuffer.deallocate()
    }

    /// Starts the loop on a thread of its own.
    func start() {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        Thread { [self] in
            tokend_set_thread_name("tokend-socket")
            run()
        }.start()
    }

    /// Stops accepting and closes the front's connections (none has a
    /// request in flight); ``finished`` fires once that is done.
    func stop() {
        guard !stopRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        guard started.load(ordering: .acquiring) else {
            finished.fire()
            return
        }
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    // MARK: - The loop

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        // While set, the loop polls instead of sleeping (see `busyPoll`).
        var pollUntil: UInt64?
        while !stopRequested.load(ordering: .acquiring) {
            let ready: Int32
            if let until = pollUntil {
                ready = epoll_wait(epoll, events, Int32(capacity), 0)
                if ready == 0 {
                    // Yielding, so a client on this core is not kept from
                    // sending the request polled for.
                    if Self.now() < until { sched_yield() } else { pollUntil = nil }
                    continue
                }
            } else {
                ready = epoll_wait(epoll, events, Int32(capacity), waitMilliseconds(now: Self.now()))
            }
            if ready < 0 {
                guard errno == EINTR else {
                    logger.critical("the socket loop failed; no more connections", metadata: ["tokend.error": "\(String(cString: strerror(errno)))"])
                    break
                }
                continue
            }
            let now = Self.now()
            answeredInPass = false
            for index in 0..<Int(ready) {
                let descriptor = tokend_epoll_event_fd(events + index)
                if descriptor == listener {
                    accept(now: now)
                } else if descriptor == wake {
                    var value: UInt64 = 0
                    _ = read(wake, &value, 8)
                } else if descriptor < connections.count, let connection = connections[Int(descriptor)] {
                    serve(connection, now: now)
                }
            }
            if let paused = acceptPausedUntil, now >= paused {
                acceptPausedUntil = nil
                _ = tokend_epoll_watch(epoll, EPOLL_CTL_MOD, listener, EPOLLIN.rawValue)
            }
            if let check = nextIdleCheck, now >= check { closeIdle(now: now) }
            // From the end of the pass: a long one does not eat the poll.
            pollUntil = busyPoll > 0 && answeredInPass && ready == 1 && open == 1 ? Self.now() + busyPoll : nil
        }
        for case let connection? in connections { drop(connection) }
        close(listener)
        finished.fire()
    }

    /// Until the next idle check or the end of an accept pause; forever if
    /// there is neither (an idle agent does not wake).
    private func waitMilliseconds(now: UInt64) -> Int32 {
        let next = min(nextIdleCheck ?? .max, acceptPausedUntil ?? .max)
        guard next != .max else { return -1 }
        guard next > now else { return 0 }
        return Int32(min((next - now + 999_999) / 1_000_000, UInt64(Int32.max)))
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    // MARK: - Accepting

    private func accept(now: UInt64) {
        // Clients that connect for one request come in bursts.
        for _ in 0..<64 {
            let descriptor = tokend_accept(listener)
            guard descriptor >= 0 else {
                let failure = errno
                switch failure {
                case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO:
                    // Nothing waiting, or a client that gave up first.
                    break
                default:
                    // Out of descriptors or memory, or a listener that
                    // cannot accept at all: the listener stays readable, so
                    // retrying at once would spin. Again in 100 ms.
                    if !acceptFailing {
                        acceptFailing = true
                        logger.warning(
                            "cannot accept a connection; accepting again every 100 ms until it works",
                            metadata: ["tokend.error": "\(String(cString: strerror(failure)))"])
                    }
                    acceptPausedUntil = now + Self.acceptPause
                    _ = tokend_epoll_watch(epoll, EPOLL_CTL_MOD, listener, 0)
                }
                return
            }
            if acceptFailing {
                acceptFailing = false
                logger.notice("accepting connections again")
            }
            admit(descriptor, now: now)
        }
    }

    /// The peer as it connected, before anything else runs: its process may
    /// exit, and its pid be reused, right after. Its process is looked up
    /// only while some identity has a `unit:` rule (reading /proc costs
    /// more than the rest of an accept).
    private func admit(_ descriptor: Int32, now: UInt64) {
        guard let peer = PeerCredentials.read(socket: descriptor, process: environment.cache.usesUnitRules) else {
            logger.warning("cannot read peer credentials; closing")
            close(descriptor)
            return
        }
        let id: ConnectionRegistry.ID
        do {
            id = try registry.add(uid: peer.uid, limit: settings.maxConnections, perUID: settings.maxConnectionsPerUID)
        } catch {
            switch error {
            case .full: refuse(descriptor, .error(.busy, "too many connections"))
            case .uidFull: refuse(descriptor, .error(.busy, "too many connections from uid \(peer.uid)"))
            }
            return
        }
        // Counted before this check: a shutdown that fires after it finds
        // the connection in the loop's table.
        guard !environment.shutdown.isFired else {
            registry.remove(id)
            refuse(descriptor, .error(.shuttingDown, "agent is stopping"))
            return
        }
        guard tokend_epoll_watch(epoll, EPOLL_CTL_ADD, descriptor, EPOLLIN.rawValue | EPOLLRDHUP.rawValue) == 0 else {
            registry.remove(id)
            close(descriptor)
            return
        }
        let connection = Connection(descriptor: descriptor, id: id, peer: peer, now: now)
        if Int(descriptor) >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: Int(descriptor) + 1 - connections.count))
        }
        connections[Int(descriptor)] = connection
        open += 1
        nextIdleCheck = min(nextIdleCheck ?? .max, now + idleTimeout)
    }

    /// Says why, and closes. What the client already sent is read first:
    /// closing a Unix socket with unread input resets it, and the client
    /// could lose the reply.
    private func refuse(_ descriptor: Int32, _ reply: Reply) {
        _ = recv(descriptor, readBuffer.baseAddress, readBuffer.count, Int32(MSG_DONTWAIT))
        var line: [UInt8] = []
        line.appendReply(reply)
        _ = line.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        close(descriptor)
    }

    // MARK: - Serving

    private func serve(_ connection: Connection, now: UInt64) {
        let received = recv(connection.descriptor, readBuffer.baseAddress, readBuffer.count, Int32(MSG_DONTWAIT))
        guard received > 0 else {
            // 0: the client closed or shut its write side; every complete
            // line it sent is answered, and an unfinished one is dropped.
            if received == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { drop(connection) }
            return
        }
        connection.lastInput = now
        let input = UnsafeRawBufferPointer(rebasing: readBuffer[0..<received])
        guard !connection.partial.isEmpty else {
            let consumed = answer(connection, input)
            if isServing(connection), consumed < input.count { connection.partial = Array(input[consumed...]) }
            return
        }
        // Appended in place: a client that sends a line a byte at a time
        // costs one growing array, not a copy of it per byte.
        var joined = connection.partial
        connection.partial = []
        joined.append(contentsOf: input)
        let consumed = joined.withUnsafeBytes { answer(connection, $0) }
        if isServing(connection), consumed < joined.count {
            joined.removeFirst(consumed)
            connection.partial = joined
        }
    }

    /// Still the front's (not handed over or closed while answering).
    private func isServing(_ connection: Connection) -> Bool {
        Int(connection.descriptor) < connections.count && connections[Int(connection.descriptor)] === connection
    }

    /// Answers the complete lines of `input` that need no waiting and
    /// writes the replies; returns how many bytes it answered (the rest is
    /// an unfinished line). At the first line it does not answer, or a
    /// reply the kernel will not take at once, the connection goes to an
    /// event loop with the rest.
    private func answer(_ connection: Connection, _ input: UnsafeRawBufferPointer) -> Int {
        guard let base = input.baseAddress else { return 0 }
        let limit = RequestParser.maximumLineLength
        output.removeAll(keepingCapacity: true)
        var offset = 0
        while offset < input.count {
            guard let found = memchr(base + offset, Int32(UInt8(ascii: "\n")), input.count - offset) else { break }
            let end = base.distance(to: UnsafeRawPointer(found))
            // Too long (the event loop's framer refuses it and closes).
            guard end + 1 - offset <= limit,
                case .success(let request) = RequestParser.parse(UnsafeRawBufferPointer(rebasing: input[offset..<end])),
                handler.appendImmediateReply(request, peer: connection.peer, prepared: prepared, to: &output)
            else {
                handOff(connection, rest: UnsafeRawBufferPointer(rebasing: input[offset...]))
                return input.count
            }
            offset = end + 1
            answeredInPass = true
            if output.count >= Self.outputSlice, !deliver(connection, rest: UnsafeRawBufferPointer(rebasing: input[offset...])) {
                return input.count
            }
        }
        let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
        guard rest.count < limit else {
            handOff(connection, rest: rest)
            return input.count
        }
        return deliver(connection, rest: rest) ? offset : input.count
    }

    /// Writes `output`; true if all of it went. If the kernel would not
    /// take it all, the connection goes to an event loop with what is left
    /// and `rest`; if the peer is gone, it is closed.
    private func deliver(_ connection: Connection, rest: UnsafeRawBufferPointer) -> Bool {
        switch flush(connection) {
        case .sent: return true
        case .wouldBlock: handOff(connection, rest: rest)
        case .failed: drop(connection)
        }
        return false
    }

    private enum Flush { case sent, wouldBlock, failed }

    /// Writes `output`. What the kernel would not take stays in `output`,
    /// for the event loop to send first.
    private func flush(_ connection: Connection) -> Flush {
        guard !output.isEmpty else { return .sent }
        let sent = output.withUnsafeBytes {
            Glibc.send(connection.descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        }
        if sent == output.count {
            output.removeAll(keepingCapacity: true)
            return .sent
        }
        if sent > 0 {
            output.removeFirst(sent)
            return .wouldBlock
        }
        // The peer is gone (EPIPE, ECONNRESET): nothing to hand over.
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? .wouldBlock : .failed
    }

    /// Moves `connection` to a SwiftNIO channel: its unsent replies go
    /// first, then its unanswered input is framed and answered there.
    private func handOff(_ connection: Connection, rest: UnsafeRawBufferPointer) {
        let descriptor = connection.descriptor
        forget(connection)
        let unsent = output
        output.removeAll(keepingCapacity: true)
        let carried = Array(rest)
        let environment = environment
        let registry = registry
        let id = connection.id
        let peer = connection.peer
        ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            // `printf 'GET x\n' | socat - UNIX-CONNECT:...` shuts down its
            // write side after the request: answer it before closing.
            .channelOption(.allowRemoteHalfClosure, value: true)
            // What one connection may have queued for a client that does
            // not read (see ConnectionHandler).
            .channelOption(.writeBufferWaterMark, value: SocketServer.writeBufferWaterMark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(environment: environment, peer: peer, carried: carried, unsent: unsent))
                    // A channel before it is active: a shutdown announced
                    // from here on reaches its handler; one announced
                    // before, the handler sees when it becomes active.
                    registry.adopt(id, channel: channel)
                }
            }
            .withConnectedSocket(descriptor)
            .whenFailure { error in
                // A channel that was made closed the descriptor. One that
                // could not even be made (fcntl failed on a valid socket)
                // leaves it open: closing it here could close a number
                // another file has since been given, so it is left.
                environment.logger.warning("cannot hand a connection to an event loop", metadata: ["tokend.error": "\(error)"])
                registry.remove(id)
            }
    }

    /// Out of the loop's table and its epoll set; the descriptor stays open.
    private func forget(_ connection: Connection) {
        _ = tokend_epoll_watch(epoll, EPOLL_CTL_DEL, connection.descriptor, 0)
        connections[Int(connection.descriptor)] = nil
        open -= 1
        if open == 0 { nextIdleCheck = nil }
    }

    private func drop(_ connection: Connection) {
        forget(connection)
        close(connection.descriptor)
        registry.remove(connection.id)
    }

    /// Closes the connections idle for the timeout, and finds when the
    /// next one could be.
    private func closeIdle(now: UInt64) {
        var next = UInt64.max
        for case let connection? in connections {
            let deadline = connection.lastInput + idleTimeout
            if deadline <= now { drop(connection) } else { next = min(next, deadline) }
        }
        nextIdleCheck = open == 0 ? nil : next
    }
}
