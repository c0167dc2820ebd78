import Synchronization

/// Uniform numbers in 0..<1 for spreading refresh times, from a generator
/// seeded once by the system's. Not for secrets: the system generator costs a
/// `getrandom` call per number, 100,000 of them when a large vault is planned
/// at start, and a refresh time needs no unpredictability.
package final class JitterRandom: Sendable {
    private let state: Mutex<UInt64>

    package init() {
        var system = SystemRandomNumberGenerator()
        state = Mutex(system.next())
    }

    /// SplitMix64: a 64-bit counter through a mixing function.
    package func unit() -> Double {
        let bits = state.withLock { state -> UInt64 in
            state &+= 0x9E37_79B9_7F4A_7C15
            var mixed = state
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            return mixed ^ (mixed >> 31)
        }
        // The top 53 bits: every double in 0..<1 with step 2^-53.
        return Double(bits >> 11) * 0x1p-53
    }
}
