import Foundation
import TokendCore

/// One identity's snapshot as the cache holds it: shared by reference, so
/// the table's buckets stay small (a pointer, not the whole snapshot),
/// and never changed: a change stores a new one.
final class CachedSnapshot {
    let snapshot: TokenSnapshot
    /// Whether the tally counts it as past its expiry. Changed only under
    /// the cache's lock, by the tally.
    var countedExpired = false

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
    private var expiries: [(at: Date, name: IdentityName)] = []

    /// Replaces `old` with `new` in the counts (either may be absent).
    mutating func replace(_ old: CachedSnapshot?, with new: CachedSnapshot?) {
        if let old {
            counts.count(old.snapshot, expired: old.countedExpired, by: -1)
            sessions.count(old.snapshot, by: -1)
        }
        if let new {
            let expiry = StateCounts.expiry(of: new.snapshot)
            new.countedExpired = expiry.map { $0 <= clock } ?? false
            counts.count(new.snapshot, expired: new.countedExpired, by: 1)
            sessions.count(new.snapshot, by: 1)
            let unchanged = old.map { !$0.countedExpired && StateCounts.expiry(of: $0.snapshot) == expiry } ?? false
            if let expiry, !new.countedExpired, !unchanged { push(expiry, new.snapshot.name) }
        }
    }

    /// The counts at `now`.
    mutating func counts(at now: Date, in table: [IdentityName: CachedSnapshot]) -> StateCounts {
        if now < clock { recount(at: now, table) }
        while let first = expiries.first, first.at <= now {
            popFirst()
            guard let slot = current(first, table) else { continue }
            counts.count(slot.snapshot, expired: false, by: -1)
            counts.count(slot.snapshot, expired: true, by: 1)
            slot.countedExpired = true
        }
        clock = now
        // Heap entries of snapshots replaced since are dropped when they
        // surface; too many of them (a token refreshed over and over) and
        // the heap is rebuilt from the live ones.
        while let first = expiries.first, current(first, table) == nil { popFirst() }
        if expiries.count > 2 * table.count + 1024 { recount(at: now, table) }
        var result = counts
        result.soonestExpiry = expiries.first.map { $0.at.timeIntervalSince(now) }
        result.activeSessions = sessions.active
        result.endedSessions = sessions.ended
        return result
    }

    /// The slot a heap entry stands for, if it is still the one counted live.
    private func current(_ entry: (at: Date, name: IdentityName), _ table: [IdentityName: CachedSnapshot]) -> CachedSnapshot? {
        guard let slot = table[entry.name], !slot.countedExpired, StateCounts.expiry(of: slot.snapshot) == entry.at
        else { return nil }
        return slot
    }

    private mutating func recount(at now: Date, _ table: [IdentityName: CachedSnapshot]) {
        self = StateTally()
        clock = now
        for slot in table.values { replace(nil, with: slot) }
    }

    private mutating func push(_ at: Date, _ name: IdentityName) {
        expiries.append((at, name))
        var child = expiries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard expiries[child].at < expiries[parent].at else { break }
            expiries.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popFirst() {
        let last = expiries.removeLast()
        guard !expiries.isEmpty else { return }
        expiries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            var smallest = parent
            if left < expiries.count, expiries[left].at < expiries[smallest].at { smallest = left }
            if left + 1 < expiries.count, expiries[left + 1].at < expiries[smallest].at { smallest = left + 1 }
            guard smallest != parent else { return }
            expiries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
