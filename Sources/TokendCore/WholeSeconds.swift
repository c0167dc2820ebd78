import Foundation

/// Turning seconds (from the wall clock, a provider, the vault) into whole
/// numbers without trapping: Swift's `Int(_:)` traps on NaN, infinities and
/// values out of range, and a stored expiry of 1e300 must not bring the
/// agent down at every start.
package enum WholeSeconds {
    /// The largest span tokend counts in: 100 years. Anything longer is
    /// "practically never" and clamped to this.
    package static let maximum: Double = 100 * 365 * 24 * 3600

    /// `seconds` clamped to `0...maximum`, NaN as 0, rounded with `rule`.
    package static func clamped(_ seconds: Double, _ rule: FloatingPointRoundingRule = .down) -> Int {
        guard seconds.isFinite else { return seconds == .infinity ? Int(maximum) : 0 }
        return Int(min(max(seconds, 0), maximum).rounded(rule))
    }

    /// `seconds` as a `Duration`, clamped the same way.
    package static func duration(_ seconds: Double) -> Duration {
        let safe = seconds.isFinite ? min(max(seconds, 0), maximum) : (seconds == .infinity ? maximum : 0)
        return .milliseconds(Int64((safe * 1000).rounded()))
    }
}
