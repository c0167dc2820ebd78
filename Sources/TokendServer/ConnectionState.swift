import NIOCore
import Synchronization

/// Told to every connection's pipeline when the agent begins to stop.
struct ShutdownEvent: Sendable {}

/// The live connections: for the connection limit, for telling each of
/// them the agent is stopping, and so the server returns only once the
/// last one has closed (its request in flight answered).
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: (channel: any Channel, uid: UInt32)] = [:]
        var perUID: [UInt32: Int] = [:]
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
    }

    enum Refusal: Error {
        /// `limit` connections are open.
        case full
        /// The peer's uid holds its share.
        case uidFull
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.channels.count } }

    /// Adds `channel` unless `limit` connections are open, or `perUID` of
    /// them are `uid`'s.
    func add(_ channel: any Channel, uid: UInt32, limit: Int, perUID: Int) throws(Refusal) {
        try state.withLock { (state) throws(Refusal) in
            guard state.channels.count < limit else { throw .full }
            guard state.perUID[uid, default: 0] < perUID else { throw .uidFull }
            state.channels[ObjectIdentifier(channel)] = (channel, uid)
            state.perUID[uid, default: 0] += 1
        }
    }

    func remove(_ channel: any Channel) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard let removed = state.channels.removeValue(forKey: ObjectIdentifier(channel)) else { return [] }
            let left = state.perUID[removed.uid, default: 1] - 1
            state.perUID[removed.uid] = left > 0 ? left : nil
            guard state.channels.isEmpty else { return [] }
            defer { state.emptyWaiters = [] }
            return state.emptyWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Sends `ShutdownEvent` down every connection's pipeline (each acts on
    /// it on its own event loop).
    func announceShutdown() {
        let channels = state.withLock { $0.channels.values.map(\.channel) }
        for channel in channels { channel.pipeline.fireUserInboundEventTriggered(ShutdownEvent()) }
    }

    /// Closes every connection now (the agent's drain time is over).
    func closeAll() {
        let channels = state.withLock { $0.channels.values.map(\.channel) }
        for channel in channels { channel.close(promise: nil) }
    }

    /// Returns once no connection is open.
    func waitUntilEmpty() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let empty = state.withLock { state -> Bool in
                if state.channels.isEmpty { return true }
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
