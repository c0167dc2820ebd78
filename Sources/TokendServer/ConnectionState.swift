import NIOCore
import Synchronization

/// What the server tracks per connection: enough to enforce the connection
/// limit, skip the idle timeout while a request runs or a `WATCH` is open,
/// and close idle connections at shutdown.
final class ConnectionState: Sendable {
    let channel: any Channel
    /// Read when the connection was accepted; nil if the kernel would not say.
    let connectedPeer: PeerCredentials?
    let busy = Atomic<Bool>(false)
    let watching = Atomic<Bool>(false)
    /// Requests handed to the async handler and not yet answered; the fast
    /// path answers only while this is 0, so replies stay in order.
    let pendingAsync = Atomic<Int>(0)
    private let admittedPeer = Mutex<PeerCredentials?>(nil)

    /// The peer, once the connection was admitted (set by the server).
    var peer: PeerCredentials? { admittedPeer.withLock { $0 } }

    func admit(_ peer: PeerCredentials) {
        admittedPeer.withLock { $0 = peer }
    }

    init(channel: any Channel, connectedPeer: PeerCredentials?) {
        self.channel = channel
        self.connectedPeer = connectedPeer
    }
}

/// The live connections, for the limit and for shutdown.
final class ConnectionRegistry: Sendable {
    private let connections = Mutex<[ObjectIdentifier: ConnectionState]>([:])

    var count: Int { connections.withLock { $0.count } }

    /// Adds `state` unless `limit` connections are already open.
    func add(_ state: ConnectionState, limit: Int) -> Bool {
        connections.withLock { connections in
            guard connections.count < limit else { return false }
            connections[ObjectIdentifier(state)] = state
            return true
        }
    }

    func remove(_ state: ConnectionState) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(state)) }
    }

    /// Closes every connection that is not in the middle of a request.
    func closeIdle() {
        let idle = connections.withLock { $0.values.filter { !$0.busy.load(ordering: .relaxed) && !$0.watching.load(ordering: .relaxed) } }
        for state in idle { state.channel.close(promise: nil) }
    }
}

/// Closes a connection that sent nothing for the idle timeout, unless it is
/// watching (a `WATCH` stream is quiet by design) or a request is running.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    typealias InboundOut = Frame

    let state: ConnectionState

    init(state: ConnectionState) {
        self.state = state
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !state.watching.load(ordering: .relaxed) && !state.busy.load(ordering: .relaxed) {
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// A level-triggered broadcast: once fired, every current and future
/// waiter returns. Tells `WATCH` streams the agent is stopping.
final class ShutdownSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [UInt64: CheckedContinuation<Void, Never>], next: UInt64)>((false, [:], 0))

    var isFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once fired, or when the calling task is cancelled.
    func wait() async {
        let id = state.withLock { state -> UInt64 in
            state.next += 1
            return state.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
