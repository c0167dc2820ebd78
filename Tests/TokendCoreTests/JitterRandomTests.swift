import Testing
import TokendCore

/// The refresh-time jitter: in 0..<1, spread over it, and different per
/// agent (seeded by the system's generator).
@Suite("Jitter random numbers")
struct JitterRandomTests {
    @Test func numbersAreInTheUnitIntervalAndSpreadOverIt() {
        let random = JitterRandom()
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 {
            let value = random.unit()
            #expect(value >= 0 && value < 1)
            buckets[min(9, Int(value * 10))] += 1
        }
        // 10,000 expected per tenth; a stuck or biased generator is far off.
        #expect(buckets.allSatisfy { (9_000...11_000).contains($0) }, "\(buckets)")
    }

    @Test func twoGeneratorsDoNotRepeatEachOther() {
        let first = JitterRandom()
        let second = JitterRandom()
        let a = (0..<8).map { _ in first.unit() }
        let b = (0..<8).map { _ in second.unit() }
        #expect(a != b)
        #expect(Set(a).count == 8)
    }
}
