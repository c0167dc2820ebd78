import TokendCore

/// The scheduler's one timer structure for all identities: a min-heap of
/// deadlines.
///
/// Why not a timer (or a sleeping task) per identity: 100,000 identities
/// would mean 100,000 suspended tasks. Here an identity costs one heap
/// entry. Re-planning pushes a new entry with a higher `version` instead of
/// searching for the old one; stale entries are skipped when they surface.
struct TimerHeap<Instant: Comparable, Key> {
    struct Entry {
        var deadline: Instant
        var key: Key
        var version: UInt64
    }

    private var heap = MinHeap<Instant, (key: Key, version: UInt64)>()

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var earliest: Instant? { heap.first?.priority }

    mutating func reserveCapacity(_ capacity: Int) {
        heap.reserveCapacity(capacity)
    }

    mutating func push(_ deadline: Instant, key: Key, version: UInt64) {
        heap.push(deadline, (key, version))
    }

    /// Removes and returns the earliest entry if its deadline is at or
    /// before `now`.
    mutating func popDue(now: Instant) -> Entry? {
        guard let first = heap.first, first.priority <= now else { return nil }
        heap.popFirst()
        return Entry(deadline: first.priority, key: first.value.key, version: first.value.version)
    }
}
