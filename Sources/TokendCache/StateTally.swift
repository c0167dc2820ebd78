import Foundation
import TokendCore

/// What the cache holds for one identity: an object that gives its
/// snapshot. The engine hands over its own record of the identity, shared
/// by reference and never changed once handed over (it changes a copy), so
/// each identity's values are held once, not once by the engine and again
/// by the cache.
package protocol SnapshotSource: AnyObject, Sendable {
    /// Computed when read, under the cache's lock.
    var snapshot: TokenSnapshot { get }
}

/// A snapshot stored as such (``TokenCache/update(_:)``, ``TokenCache/modify(_:_:)``).
final class CachedSnapshot: SnapshotSource {
    let snapshot: TokenSnapshot

    init(_ snapshot: TokenSnapshot) {
        self.snapshot = snapshot
    }
}

/// ``StateCounts`` kept up to date as snapshots change, so `STATS`, the
/// metrics and the systemd status line cost what changed, not a walk over
/// every identity.
///
/// A count depends on the time only through token expiry: a token counted
/// fresh turns expired when its `expiresAt` passes. The tally keeps the
/// counts as of `clock` and a min-heap of the expiry times still ahead;
/// reading at a later time moves the tokens whose expiry passed. Reading
/// at an earlier time (the wall clock went back) counts everything again.
struct StateTally {
    private(set) var counts = StateCounts()
    private var sessions = SessionTally()
    private var clock = Date.distantPast
    private var expiries = MinHeap<Date, IdentityName>()
    /// Identities counted as past their expiry (few: a token is refreshed
    /// before it expires).
    private var expired: Set<IdentityName> = []

    /// Replaces `old` with `new` as `name`'s snapshot in the counts (either
    /// may be absent).
    mutating func replace(_ name: IdentityName, _ old: TokenSnapshot?, with new: TokenSnapshot?) {
        let wasExpired = expired.contains(name)
        if let old {
            counts.count(old, expired: wasExpired, by: -1)
            sessions.count(old, by: -1)
        }
        guard let new else {
            if wasExpired { expired.remove(name) }
            return
        }
        let expiry = StateCounts.expiry(of: new)
        let isExpired = expiry.map { $0 <= clock } ?? false
        if isExpired != wasExpired {
            if isExpired { expired.insert(name) } else { expired.remove(name) }
        }
        counts.count(new, expired: isExpired, by: 1)
        sessions.count(new, by: 1)
        let unchanged = old.map { !wasExpired && StateCounts.expiry(of: $0) == expiry } ?? false
        if let expiry, !isExpired, !unchanged { expiries.push(expiry, name) }
    }

    /// The counts at `now`.
    mutating func counts(at now: Date, in table: [IdentityName: any SnapshotSource]) -> StateCounts {
        if now < clock { recount(at: now, table) }
        while let first = expiries.first, first.priority <= now {
            expiries.popFirst()
            guard let snapshot = current(first, table) else { continue }
            counts.count(snapshot, expired: false, by: -1)
            counts.count(snapshot, expired: true, by: 1)
            expired.insert(first.value)
        }
        clock = now
        // Heap entries of snapshots replaced since are dropped when they
        // surface; too many of them (a token refreshed over and over) and
        // the heap is rebuilt from the live ones.
        while let first = expiries.first, current(first, table) == nil { expiries.popFirst() }
        if expiries.count > 2 * table.count + 1024 { recount(at: now, table) }
        var result = counts
        result.soonestExpiry = expiries.first.map { $0.priority.timeIntervalSince(now) }
        result.activeSessions = sessions.active
        result.endedSessions = sessions.ended
        return result
    }

    /// The snapshot a heap entry stands for, if it is still the one counted live.
    private func current(_ entry: (priority: Date, value: IdentityName), _ table: [IdentityName: any SnapshotSource]) -> TokenSnapshot? {
        guard !expired.contains(entry.value), let snapshot = table[entry.value]?.snapshot,
            StateCounts.expiry(of: snapshot) == entry.priority
        else { return nil }
        return snapshot
    }

    private mutating func recount(at now: Date, _ table: [IdentityName: any SnapshotSource]) {
        self = StateTally()
        clock = now
        for (name, source) in table { replace(name, nil, with: source.snapshot) }
    }
}
