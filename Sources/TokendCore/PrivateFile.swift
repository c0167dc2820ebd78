/// The rule for files that hold secrets (vault key, vault, client secrets):
/// nothing for group or others.
package enum PrivateFile {
    /// Why a file with permission bits `mode` is not private enough, with
    /// the fix, or nil if it is fine.
    ///
    /// - Parameter what: how the message names the file ("key file"), if at all.
    package static func problem(path: String, mode: UInt32, what: String? = nil) -> String? {
        guard mode & 0o077 != 0 else { return nil }
        let name = what.map { "\($0) \(path)" } ?? path
        return "\(name) is accessible by group or others (mode 0\(String(mode & 0o777, radix: 8))); "
            + "fix it with: chmod 600 \(path)"
    }
}
