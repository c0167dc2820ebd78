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

    /// The table and its names in order (for `LIST` pages without a sort).
    /// Names arrive in order at load (the vault reads them sorted), so the
    /// index is appended to; a name enrolled out of order marks it unsorted
    /// and the next `LIST` sorts it once.
    private struct Table {
        /// Each bucket holds a reference, not the snapshot: at 100,000
        /// identities a table of whole snapshots (about 200 bytes, in a
        /// table sized to the next power of two above 4/3 of the count)
        /// costs twice the memory of the snapshots themselves.
        var byName: [IdentityName: any SnapshotSource] = [:]
        var tally = StateTally()
        var names: [IdentityName] = []
        var sorted = true
        /// Identities with a `unit:` allow rule: while there are none, the
        /// server need not read a connecting peer's process from `/proc`.
        var withUnitRules = 0

        /// Stores `new`, whose snapshot is `snapshot` (or removes the name
        /// when both are nil) and keeps the counts in step; returns the
        /// snapshot it replaced.
        @discardableResult
        mutating func store(_ new: (any SnapshotSource)?, _ snapshot: TokenSnapshot?, for name: IdentityName) -> TokenSnapshot? {
            let old = (new.map { byName.updateValue($0, forKey: name) } ?? byName.removeValue(forKey: name))?.snapshot
            withUnitRules += (snapshot?.hasUnitRule == true ? 1 : 0) - (old?.hasUnitRule == true ? 1 : 0)
            tally.replace(name, old, with: snapshot)
            return old
        }

        mutating func insertName(_ name: IdentityName) {
            if let last = names.last, !(last < name) { sorted = false }
            names.append(name)
        }

        mutating func removeName(_ name: IdentityName) {
            sortIfNeeded()
            let index = lowerBound(name)
            if index < names.count, names[index] == name { names.remove(at: index) }
        }

        mutating func sortIfNeeded() {
            guard !sorted else { return }
            names.sort()
            sorted = true
        }

        /// The first index whose name is not below `name` (names sorted).
        func lowerBound(_ name: IdentityName) -> Int {
            var low = 0
            var high = names.count
            while low < high {
                let middle = (low + high) / 2
                if names[middle] < name { low = middle + 1 } else { high = middle }
            }
            return low
        }
    }

    private let entries = Mutex(Table())
    /// Counts every change to the table (a store, a change in place, a
    /// removal), bumped under the table's lock after the change. Whoever
    /// keeps something derived from a snapshot (the socket's prepared `GET`
    /// replies) knows it is current while this has not moved, without
    /// taking the lock.
    private let changes = Atomic<UInt64>(0)
    private let watchers = Mutex<(next: UInt64, byName: [IdentityName: [Watcher]])>((0, [:]))

    package init() {}

    /// See ``changes``: read it before the snapshot a derived value is
    /// made from, and the value is current while it reads the same.
    package var version: UInt64 { changes.load(ordering: .acquiring) }

    private func bumpVersion() {
        changes.add(1, ordering: .releasing)
    }

    package func snapshot(_ name: IdentityName) -> TokenSnapshot? {
        entries.withLock { $0.byName[name]?.snapshot }
    }

    package var count: Int { entries.withLock { $0.byName.count } }

    package func contains(_ name: IdentityName) -> Bool {
        entries.withLock { $0.byName[name] != nil }
    }

    /// Whether any identity has a `unit:` allow rule.
    package var usesUnitRules: Bool { entries.withLock { $0.withUnitRules > 0 } }

    /// Makes room for `capacity` identities in one allocation.
    package func reserveCapacity(_ capacity: Int) {
        entries.withLock {
            $0.byName.reserveCapacity(capacity)
            $0.names.reserveCapacity(capacity)
        }
    }

    /// The counts at `now`, brought up to date under the table's lock.
    func withTally(at now: Date) -> StateCounts {
        entries.withLock { table in table.tally.counts(at: now, in: table.byName) }
    }

    /// Every snapshot (tests; the server counts with ``counts(at:)``).
    package func all() -> [TokenSnapshot] {
        entries.withLock { $0.byName.values.map(\.snapshot) }
    }

    /// One page of names in byte order after `after`, starting with
    /// `prefix`, that `include` accepts: at most `limit` names, looking at
    /// no more than `budget` identities. `include` runs outside the lock
    /// (it may look up users and groups), on batches copied out of it.
    ///
    /// - Returns: the names, and where to continue (the last name looked
    ///   at) when the table may hold more.
    package func page(
        prefix: String?, after: IdentityName?, limit: Int, budget: Int, where include: (TokenSnapshot) -> Bool
    ) -> (names: [IdentityName], next: IdentityName?) {
        var found: [IdentityName] = []
        var cursor = after
        var looked = 0
        while found.count < limit, looked < budget {
            let (batch, ended) = entries.withLock { table -> ([TokenSnapshot], Bool) in
                table.sortIfNeeded()
                var index = cursor.map { name in
                    let bound = table.lowerBound(name)
                    return bound < table.names.count && table.names[bound] == name ? bound + 1 : bound
                } ?? 0
                if let prefix, let start = IdentityName(prefix) { index = max(index, table.lowerBound(start)) }
                var batch: [TokenSnapshot] = []
                while batch.count < min(256, budget - looked) {
                    guard index < table.names.count else { return (batch, true) }
                    let name = table.names[index]
                    if let prefix, !name.rawValue.hasPrefix(prefix) { return (batch, true) }
                    if let source = table.byName[name] { batch.append(source.snapshot) }
                    index += 1
                }
                return (batch, false)
            }
            for (offset, snapshot) in batch.enumerated() {
                looked += 1
                cursor = snapshot.name
                guard include(snapshot) else { continue }
                found.append(snapshot.name)
                // Full: more may follow unless this was the very last name.
                if found.count == limit { return (found, ended && offset == batch.count - 1 ? nil : cursor) }
            }
            if ended { return (found, nil) }
        }
        return (found, cursor)
    }

    /// Stores `snapshot` and tells its watchers, if anything they see changed.
    package func update(_ snapshot: TokenSnapshot) {
        publish(CachedSnapshot(snapshot), as: snapshot)
    }

    /// Stores `source` as its identity's snapshot (it must not change
    /// afterwards) and tells the watchers, if anything they see changed.
    package func publish(_ source: any SnapshotSource) {
        publish(source, as: source.snapshot)
    }

    private func publish(_ source: any SnapshotSource, as snapshot: TokenSnapshot) {
        let changed = entries.withLock { table -> Bool in
            let old = table.store(source, snapshot, for: snapshot.name)
            bumpVersion()
            if old == nil { table.insertName(snapshot.name) }
            return old != snapshot
        }
        if changed { notify(snapshot.name, snapshot) }
    }

    /// Changes one snapshot in place, if it exists.
    package func modify(_ name: IdentityName, _ change: (inout TokenSnapshot) -> Void) {
        let updated = entries.withLock { table -> TokenSnapshot? in
            guard let old = table.byName[name]?.snapshot else { return nil }
            var snapshot = old
            change(&snapshot)
            guard snapshot != old else { return nil }
            table.store(CachedSnapshot(snapshot), snapshot, for: name)
            bumpVersion()
            return snapshot
        }
        if let updated { notify(name, updated) }
    }

    package func remove(_ name: IdentityName) {
        let removed = entries.withLock { table -> Bool in
            guard table.store(nil, nil, for: name) != nil else { return false }
            bumpVersion()
            table.removeName(name)
            return true
        }
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
