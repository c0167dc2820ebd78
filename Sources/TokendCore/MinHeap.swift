/// A binary min-heap: the earliest of many times, for the scheduler's
/// deadlines and the cache's token expiries.
///
/// Inlinable, so each user gets a specialized copy: generic code called
/// across the module boundary unspecialized costs a dictionary lookup per
/// comparison, which at 100,000 identities shows in the start time.
/// Public, not `package`: with Swift 6.3 here, `package` inlinable code
/// was never specialized in the modules that use it (only the generic
/// symbol was in the release binary, and every push went through it).
public struct MinHeap<Priority: Comparable, Value> {
    @usableFromInline var elements: [(priority: Priority, value: Value)] = []

    @inlinable public init() {}

    @inlinable public var count: Int { elements.count }
    @inlinable public var isEmpty: Bool { elements.isEmpty }
    @inlinable public var first: (priority: Priority, value: Value)? { elements.first }

    @inlinable public mutating func reserveCapacity(_ capacity: Int) {
        elements.reserveCapacity(capacity)
    }

    @inlinable public mutating func push(_ priority: Priority, _ value: Value) {
        elements.append((priority, value))
        var child = elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard elements[child].priority < elements[parent].priority else { break }
            elements.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest element.
    @inlinable @discardableResult public mutating func popFirst() -> (priority: Priority, value: Value)? {
        guard let first = elements.first else { return nil }
        let last = elements.removeLast()
        guard !elements.isEmpty else { return first }
        elements[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            var smallest = parent
            if left < elements.count, elements[left].priority < elements[smallest].priority { smallest = left }
            if left + 1 < elements.count, elements[left + 1].priority < elements[smallest].priority { smallest = left + 1 }
            guard smallest != parent else { return first }
            elements.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
