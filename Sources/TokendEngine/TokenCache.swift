import Foundation
import Synchronization
import TokendCore

/// The in-memory token table the socket server reads: a `GET` is a lookup
/// here, never a database read.
///
/// The engine is its only writer, and writes only after the vault commit,
/// so nothing is ever served that a crash could lose. Readers take a short
/// lock; `WATCH` subscribers get every change pushed.
package final class TokenCache: Sendable {
    private struct Watcher {
        let id: UInt64
        let continuation: AsyncStream<TokenSnapshot?>.Continuation
    }

    private let entries = Mutex<[IdentityName: TokenSnapshot]>([:])
    private let watchers = Mutex<(next: UInt64, byName: [IdentityName: [Watcher]])>((0, [:]))

    package init() {}

    package func snapshot(_ name: IdentityName) -> TokenSnapshot? {
        entries.withLock { $0[name] }
    }

    package var count: Int { entries.withLock { $0.count } }

    /// Makes room for `capacity` identities in one allocation.
    package func reserveCapacity(_ capacity: Int) {
        entries.withLock { $0.reserveCapacity(capacity) }
    }

    /// Every snapshot, for `STATS`, metrics and `systemctl status`.
    package func all() -> [TokenSnapshot] {
        entries.withLock { Array($0.values) }
    }

    /// Names in byte order, filtered, for `LIST` pagination.
    package func names(prefix: String?, after: IdentityName?, where include: (TokenSnapshot) -> Bool) -> [IdentityName] {
        let matching = entries.withLock { entries in
            entries.values.filter { snapshot in
                if let prefix, !snapshot.name.rawValue.hasPrefix(prefix) { return false }
                if let after, !(after < snapshot.name) { return false }
                return include(snapshot)
            }.map(\.name)
        }
        return matching.sorted()
    }

    /// Stores `snapshot` and tells its watchers, if anything they see changed.
    package func update(_ snapshot: TokenSnapshot) {
        let changed = entries.withLock { entries -> Bool in
            let old = entries.updateValue(snapshot, forKey: snapshot.name)
            return old != snapshot
        }
        if changed { notify(snapshot.name, snapshot) }
    }

    /// Changes one snapshot in place, if it exists.
    package func modify(_ name: IdentityName, _ change: (inout TokenSnapshot) -> Void) {
        let updated = entries.withLock { entries -> TokenSnapshot? in
            guard var snapshot = entries[name] else { return nil }
            let old = snapshot
            change(&snapshot)
            entries[name] = snapshot
            return snapshot == old ? nil : snapshot
        }
        if let updated { notify(name, updated) }
    }

    package func remove(_ name: IdentityName) {
        let removed = entries.withLock { $0.removeValue(forKey: name) != nil }
        if removed { notify(name, nil) }
    }

    /// A stream of the identity's snapshots: the current one first, then
    /// every change; `nil` when the identity is removed. Cancelling the
    /// consuming task (or the client going away) ends the subscription.
    package func watch(_ name: IdentityName) -> AsyncStream<TokenSnapshot?> {
        let (stream, continuation) = AsyncStream<TokenSnapshot?>.makeStream(bufferingPolicy: .bufferingNewest(16))
        let id = watchers.withLock { state -> UInt64 in
            state.next += 1
            state.byName[name, default: []].append(Watcher(id: state.next, continuation: continuation))
            return state.next
        }
        continuation.onTermination = { [weak self] _ in
            self?.watchers.withLock { state in
                state.byName[name]?.removeAll { $0.id == id }
                if state.byName[name]?.isEmpty == true { state.byName[name] = nil }
            }
        }
        continuation.yield(snapshot(name))
        return stream
    }

    /// Number of live `WATCH` subscriptions (for tests and metrics).
    package var watcherCount: Int {
        watchers.withLock { $0.byName.values.reduce(0) { $0 + $1.count } }
    }

    private func notify(_ name: IdentityName, _ snapshot: TokenSnapshot?) {
        let targets = watchers.withLock { $0.byName[name] ?? [] }
        for watcher in targets { watcher.continuation.yield(snapshot) }
    }
}
