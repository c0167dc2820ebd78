import Testing
import TokendCore

@Suite("MinHeap: the earliest first, whatever the order of pushes")
struct MinHeapTests {
    @Test func popsInOrderAcrossInterleavedPushesAndPops() {
        var generator = SystemRandomNumberGenerator()
        var heap = MinHeap<Int, Int>()
        var reference: [Int] = []
        for step in 0..<5_000 {
            if reference.isEmpty || Int.random(in: 0..<3, using: &generator) > 0 {
                let value = Int.random(in: -1_000...1_000, using: &generator)
                heap.push(value, step)
                reference.append(value)
            } else {
                reference.sort()
                #expect(heap.popFirst()?.priority == reference.removeFirst())
            }
            #expect(heap.count == reference.count)
        }
        reference.sort()
        var drained: [Int] = []
        while let next = heap.popFirst() { drained.append(next.priority) }
        #expect(drained == reference)
        #expect(heap.isEmpty && heap.first == nil && heap.popFirst() == nil)
    }
}
