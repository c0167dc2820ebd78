/// Everything wrong with a configuration file, one problem per line.
///
/// All problems are reported at once (not just the first), each naming the
/// file and the key, so an operator fixes the file in one pass.
package struct ConfigError: Error, Sendable, CustomStringConvertible {
    package struct Problem: Sendable, Hashable, CustomStringConvertible {
        package var file: String
        /// Dotted key path (`providers.corp.client_id`), or empty for the file itself.
        package var key: String
        package var message: String

        package var description: String {
            key.isEmpty ? "\(file): \(message)" : "\(file): \(key): \(message)"
        }
    }

    package var problems: [Problem]

    package init(_ problems: [Problem]) {
        self.problems = problems
    }

    package var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
