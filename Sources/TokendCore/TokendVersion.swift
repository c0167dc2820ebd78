/// The agent's version, reported by `HELLO`, `--version` and `User-Agent`.
package enum TokendVersion {
    package static let current = "0.1.0"
}
