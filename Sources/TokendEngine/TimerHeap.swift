/// A binary min-heap of deadlines: the scheduler's one timer structure for
/// all identities.
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

    private var entries: [Entry] = []

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }
    var earliest: Instant? { entries.first?.deadline }

    mutating func reserveCapacity(_ capacity: Int) {
        entries.reserveCapacity(capacity)
    }

    mutating func push(_ deadline: Instant, key: Key, version: UInt64) {
        entries.append(Entry(deadline: deadline, key: key, version: version))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest entry if its deadline is at or
    /// before `now`.
    mutating func popDue(now: Instant) -> Entry? {
        guard let first = entries.first, first.deadline <= now else { return nil }
        let last = entries.removeLast()
        guard !entries.isEmpty else { return first }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
            guard smallest != parent else { break }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
