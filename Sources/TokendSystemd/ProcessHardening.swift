import CTokendSystem

#if canImport(Glibc)
import Glibc
#endif

/// Keeps token material out of core dumps and away from same-user ptrace.
package enum ProcessHardening {
    /// Disables core dumps and makes the process non-dumpable, which also
    /// forbids ptrace attach and `/proc/<pid>/mem` reads by other processes
    /// of the same user. Returns false if the kernel refused.
    @discardableResult
    package static func apply() -> Bool {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        let limited = setrlimit(Int32(RLIMIT_CORE.rawValue), &none) == 0
        let undumpable = tokend_set_dumpable(0) == 0
        return limited && undumpable
    }

    /// Whether the process is currently non-dumpable.
    package static var isDumpable: Bool {
        tokend_get_dumpable() != 0
    }
}
