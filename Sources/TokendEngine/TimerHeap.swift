import TokendCore

/// The scheduler's one timer structure for all identities: a min-heap of
/// deadlines.
///
/// Why not a timer (or a sleeping task) per identity: 100,000 identities
/// would mean 100,000 suspended tasks. Here an identity costs one heap
/// entry. Re-planning pushes a new entry with a higher `version` instead of
/// searching for the old one; stale entries are skipped when they surface.
///
/// The heap orders `Duration`s from the first deadline pushed, not the
/// clock's own instants: the engine is generic over its clock, and a heap
/// of a generic instant compares through run-time metadata (at 100,000
/// identities, most of the time spent planning at start). One conversion
/// per push or pop replaces a generic comparison per level of the heap.
struct TimerHeap<Instant: InstantProtocol> where Instant.Duration == Duration {
    struct Entry {
        var deadline: Instant
        var key: IdentityName
        var version: UInt64
    }

    private var origin: Instant?
    private var heap = MinHeap<Duration, (key: IdentityName, version: UInt64)>()

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var earliest: Instant? {
        guard let origin, let first = heap.first else { return nil }
        return origin.advanced(by: first.priority)
    }

    mutating func reserveCapacity(_ capacity: Int) {
        heap.reserveCapacity(capacity)
    }

    mutating func push(_ deadline: Instant, key: IdentityName, version: UInt64) {
        let origin = origin ?? deadline
        self.origin = origin
        heap.push(origin.duration(to: deadline), (key, version))
    }

    /// Removes and returns the earliest entry if its deadline is at or
    /// before `now`.
    mutating func popDue(now: Instant) -> Entry? {
        guard let origin, let first = heap.first, first.priority <= origin.duration(to: now) else { return nil }
        heap.popFirst()
        return Entry(deadline: origin.advanced(by: first.priority), key: first.value.key, version: first.value.version)
    }
}
