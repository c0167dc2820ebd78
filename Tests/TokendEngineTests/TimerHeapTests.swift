import Testing
import TokendCore
@testable import TokendEngine

/// The scheduler's heap orders durations from its first deadline; the
/// order must still be the clock's, for deadlines before that first one
/// too, and `popDue` must give nothing before its time.
@Suite("Timer heap")
struct TimerHeapTests {
    @Test func deadlinesComeOutInTheClocksOrderWhateverThePushOrder() {
        var random = SystemRandomNumberGenerator()
        let base = ContinuousClock.now
        // Offsets on both sides of the first push (the heap's origin), ties included.
        let offsets = (0..<2_000).map { _ in Int64.random(in: -5_000...5_000, using: &random) } + [0, 0, -5_000, 5_000]
        var heap = TimerHeap<ContinuousClock.Instant>()
        for (index, offset) in offsets.enumerated() {
            heap.push(base.advanced(by: .milliseconds(offset)), key: IdentityName("id-\(index)")!, version: UInt64(index))
        }
        #expect(heap.count == offsets.count)
        #expect(heap.earliest == base.advanced(by: .milliseconds(offsets.min()!)))
        var popped: [ContinuousClock.Instant] = []
        while let entry = heap.popDue(now: base.advanced(by: .seconds(10))) {
            #expect(entry.key == IdentityName("id-\(entry.version)")!)
            popped.append(entry.deadline)
        }
        #expect(popped == offsets.sorted().map { base.advanced(by: .milliseconds($0)) })
        #expect(heap.isEmpty && heap.earliest == nil)
    }

    @Test func nothingIsDueBeforeItsDeadline() {
        let base = ContinuousClock.now
        var heap = TimerHeap<ContinuousClock.Instant>()
        #expect(heap.popDue(now: base) == nil)
        heap.push(base.advanced(by: .seconds(5)), key: IdentityName("later")!, version: 1)
        heap.push(base.advanced(by: .seconds(-1)), key: IdentityName("overdue")!, version: 2)
        #expect(heap.popDue(now: base)?.key == IdentityName("overdue")!)
        #expect(heap.popDue(now: base.advanced(by: .seconds(4))) == nil)
        #expect(heap.popDue(now: base.advanced(by: .seconds(5)))?.key == IdentityName("later")!)
    }
}
