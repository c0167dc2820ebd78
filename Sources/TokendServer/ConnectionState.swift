import NIOCore
import Synchronization

/// Told to every connection's pipeline when the agent begins to stop.
struct ShutdownEvent: Sendable {}

/// The live connections: for the connection limit, for telling each of
/// them the agent is stopping, and so the server returns only once the
/// last one has closed (its request in flight answered).
///
/// A connection is first the ``FrontLoop``'s, which closes its own when the
/// agent stops; one handed to an event loop (a request that waits, a
/// `WATCH`, a client that does not read) is a channel from then on.
final class ConnectionRegistry: Sendable {
    typealias ID = UInt64

    private enum Member {
        /// Served by the front loop, which closes it itself.
        case front
        case channel(any Channel)
    }

    private struct State {
        var members: [ID: (member: Member, uid: UInt32)] = [:]
        var perUID: [UInt32: Int] = [:]
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
        var lastID: ID = 0
    }

    enum Refusal: Error {
        /// `limit` connections are open.
        case full
        /// The peer's uid holds its share.
        case uidFull
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.members.count } }

    /// Counts a new connection of `uid`, unless `limit` connections are
    /// open or `perUID` of them are `uid`'s.
    func add(uid: UInt32, limit: Int, perUID: Int) throws(Refusal) -> ID {
        try state.withLock { (state) throws(Refusal) -> ID in
            guard state.members.count < limit else { throw .full }
            guard state.perUID[uid, default: 0] < perUID else { throw .uidFull }
            state.lastID += 1
            state.members[state.lastID] = (.front, uid)
            state.perUID[uid, default: 0] += 1
            return state.lastID
        }
    }

    /// The connection `id` is now `channel`, removed when it closes,
    /// however it closes (a channel closed before it became active never
    /// sees `channelInactive`).
    func adopt(_ id: ID, channel: any Channel) {
        state.withLock { state in
            guard let entry = state.members[id] else { return }
            state.members[id] = (.channel(channel), entry.uid)
        }
        channel.closeFuture.whenComplete { _ in self.remove(id) }
    }

    func remove(_ id: ID) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard let removed = state.members.removeValue(forKey: id) else { return [] }
            let left = state.perUID[removed.uid, default: 1] - 1
            state.perUID[removed.uid] = left > 0 ? left : nil
            guard state.members.isEmpty else { return [] }
            defer { state.emptyWaiters = [] }
            return state.emptyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private var channels: [any Channel] {
        state.withLock { state in
            state.members.values.compactMap { entry -> (any Channel)? in
                if case .channel(let channel) = entry.member { return channel }
                return nil
            }
        }
    }

    /// Sends `ShutdownEvent` down every channel's pipeline (each acts on it
    /// on its own event loop).
    func announceShutdown() {
        for channel in channels { channel.pipeline.fireUserInboundEventTriggered(ShutdownEvent()) }
    }

    /// Closes every channel now (the agent's drain time is over).
    func closeAll() {
        for channel in channels { channel.close(promise: nil) }
    }

    /// Returns once no connection is open.
    func waitUntilEmpty() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let empty = state.withLock { state -> Bool in
                if state.members.isEmpty { return true }
                state.emptyWaiters.append(continuation)
                return false
            }
            if empty { continuation.resume() }
        }
    }
}

/// A level-triggered broadcast: once fired, every current and future
/// waiter returns. Tells `WATCH` streams the policy changed.
final class ShutdownSignal: Sendable {
    private let state = Mutex<(waiters: [UInt64: CheckedContinuation<Void, Never>], next: UInt64)>(([:], 0))
    /// Read on every request: an atomic load, not a lock.
    private let fired = Atomic<Bool>(false)

    var isFired: Bool { fired.load(ordering: .acquiring) }

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            fired.store(true, ordering: .releasing)
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
                    if fired.load(ordering: .relaxed) || Task.isCancelled { return true }
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
