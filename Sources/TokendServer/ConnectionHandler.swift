import Logging
import NIOCore
import TokendCore
import TokendCache
import TokendProtocol

/// What every connection shares: the protocol logic and the server's state.
struct ConnectionEnvironment: Sendable {
    let handler: RequestHandler
    let cache: TokenCache
    let shutdown: ShutdownSignal
    let idleTimeout: TimeAmount
    let logger: Logger
}

/// One connection the ``FrontLoop`` handed over, served on its event loop
/// with no task of its own.
///
/// Requests that need no waiting (`PING`, `HELLO`, a `GET` of a valid
/// token) are answered right here, and the answers to one read are flushed
/// together. Any other request goes to ``RequestHandler`` in a task; until
/// it is answered nothing after it is (replies stay in order, pipelining
/// works) and nothing more is read.
///
/// Bounded: lines are framed one at a time and the rest kept as bytes
/// (``LineFramer``); answering stops while the channel is not writable (a
/// client that sends but does not read) and reading stops while answering
/// does, so one connection holds at most one read, the write buffer's
/// high-water mark and one reply. Idle connections are closed after the
/// idle timeout, unless a request runs or a `WATCH` is open.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let environment: ConnectionEnvironment
    private let peer: PeerCredentials
    /// What the front loop read and did not answer, and the replies it
    /// could not send: sent and answered first, in that order.
    private var carried: [UInt8]
    private var unsent: [UInt8]
    private var framer = LineFramer(maximumLength: RequestParser.maximumLineLength)
    private var context: ChannelHandlerContext?
    /// A request is with the async handler.
    private var awaiting = false
    private var watching = false
    private var watchTask: Task<Void, Never>?
    private var closing = false
    /// The client shut its write side: answer what it sent, then close.
    private var inputEnded = false
    /// The agent is stopping: close once the request in flight is answered.
    private var stopping = false
    /// The last pass over the input stopped before the framer ran dry.
    private var stalled = false
    /// A read the channel asked for while stalled, issued once unstalled.
    private var readPending = false
    private var unflushed = false
    private var answering = false
    private var lastInput = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?

    init(environment: ConnectionEnvironment, peer: PeerCredentials, carried: [UInt8], unsent: [UInt8]) {
        self.environment = environment
        self.peer = peer
        self.carried = carried
        self.unsent = unsent
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        idleCheck?.cancel()
        watchTask?.cancel()
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleIdleCheck(context: context, in: environment.idleTimeout)
        // The announcement may have gone out while the front loop handed
        // this connection over.
        if environment.shutdown.isFired { stopping = true }
        if !unsent.isEmpty {
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: unsent)), promise: nil)
            unflushed = true
            unsent = []
        }
        if !carried.isEmpty {
            framer.append(context.channel.allocator.buffer(bytes: carried))
            carried = []
        }
        answer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleCheck?.cancel()
        watchTask?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Lines sent during a `WATCH` are not requests: dropped.
        guard !closing, !watching else { return }
        framer.append(unwrapInboundIn(data))
        answer(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Once per read, not per line: the clock is not free.
        lastInput = .now()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && stalled && !awaiting { answer(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            stopping = true
            if closing {
                // Its last reply is stuck behind a client that does not
                // read: the agent will not wait for it.
                context.close(promise: nil)
            } else if watching {
                send(.error(.shuttingDown, "agent is stopping"), context: context, thenClose: true)
            } else if !awaiting {
                closing = true
                context.close(promise: nil)
            }
            return
        }
        if case .inputClosed = event as? ChannelEvent {
            inputEnded = true
            if !awaiting { answer(context: context) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        if stalled || awaiting {
            readPending = true
        } else {
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        environment.logger.debug("connection ended with an error", metadata: ["tokend.error": "\(error)"])
        closing = true
        context.close(promise: nil)
    }

    /// Answers the lines read so far, in order, until one must wait.
    private func answer(context: ChannelHandlerContext) {
        // A flush can report writability at once, which calls back here.
        guard !answering else { return }
        answering = true
        defer { answering = false }
        stalled = false
        while !awaiting && !closing && !watching {
            if stopping {
                closing = true
                if unflushed { context.flush() }
                context.close(promise: nil)
                return
            }
            guard context.channel.isWritable else {
                stalled = true
                break
            }
            guard let frame = framer.next() else { break }
            guard case .request(let parsed) = frame else {
                send(.error(.tooLong, "request line over \(RequestParser.maximumLineLength) bytes"), context: context, thenClose: true)
                return
            }
            if case .success(let request) = parsed, let reply = environment.handler.immediateReply(request, peer: peer) {
                send(reply, context: context)
            } else {
                handOff(parsed, peer: peer, context: context)
            }
        }
        if awaiting { stalled = true }
        if unflushed {
            unflushed = false
            context.flush()
        }
        if inputEnded && !stalled && !awaiting && !watching && !closing {
            closing = true
            context.close(promise: nil)
            return
        }
        if !stalled && readPending {
            readPending = false
            context.read()
        }
    }

    /// Passes a request that may wait (on the engine, the vault, a
    /// provider) to the async handler; its answer comes back on this loop.
    private func handOff(_ parsed: Result<Request, ProtocolError>, peer: PeerCredentials, context: ChannelHandlerContext) {
        awaiting = true
        let handler = environment.handler
        let eventLoop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        Task {
            let outcome = await handler.handle(parsed, peer: peer)
            eventLoop.execute { this.value.finish(outcome) }
        }
    }

    private func finish(_ outcome: RequestHandler.Outcome) {
        awaiting = false
        // The idle clock starts again at the answer, not at the request.
        lastInput = .now()
        guard let context, !closing else { return }
        switch outcome {
        case .reply(let reply):
            // Stopping: this was the request in flight; answer it, close.
            send(reply, context: context, thenClose: stopping)
            if stopping { return }
        case .close(let reply):
            send(reply, context: context, thenClose: true)
            return
        case .watch(let name, let first):
            send(first, context: context)
            if stopping {
                send(.error(.shuttingDown, "agent is stopping"), context: context, thenClose: true)
                return
            }
            watching = true
            startWatch(name, first: first, peer: peer, context: context)
        }
        answer(context: context)
    }

    private func startWatch(_ name: IdentityName, first: Reply, peer: PeerCredentials, context: ChannelHandlerContext) {
        let stream = WatchStream(
            name: name, peer: peer, channel: context.channel, handler: environment.handler, cache: environment.cache)
        watchTask = Task { await stream.run(first: first) }
    }

    /// Queues `reply`; with `thenClose`, flushes and closes once it is
    /// written (a plain close would drop a reply still queued).
    private func send(_ reply: Reply, context: ChannelHandlerContext, thenClose: Bool = false) {
        var buffer = context.channel.allocator.buffer(capacity: 0)
        buffer.writeReply(reply)
        guard thenClose else {
            context.write(wrapOutboundOut(buffer), promise: nil)
            unflushed = true
            return
        }
        closing = true
        unflushed = false
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: written)
        written.futureResult.whenComplete { _ in channel.close(promise: nil) }
        // If the client does not read, the idle check closes it anyway:
        // within a second while the agent stops, else at the idle timeout.
        if stopping { scheduleIdleCheck(context: context, in: .seconds(1)) }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, in delay: TimeAmount) {
        idleCheck?.cancel()
        idleCheck = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            checkIdle()
        }
    }

    private func checkIdle() {
        guard let context else { return }
        // Closing since at least this long: its last reply waits for a
        // client that does not read. The slot is not held for it.
        if closing { return context.close(promise: nil) }
        let timeout = environment.idleTimeout
        // A quiet `WATCH` or a request still running is not idle.
        if watching || awaiting { return scheduleIdleCheck(context: context, in: timeout) }
        let quiet = NIODeadline.now() - lastInput
        if quiet >= timeout {
            closing = true
            context.close(promise: nil)
        } else {
            scheduleIdleCheck(context: context, in: timeout - quiet)
        }
    }
}
