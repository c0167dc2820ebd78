import Foundation

/// Tools find credential helpers by program name (`docker-credential-<name>`,
/// `git-credential-<name>`); a link with such a name to `tokend` runs the
/// matching subcommand, so one binary serves them all.
enum HelperAlias {
    static let subcommands = [
        "docker-credential-tokend": "docker-credential",
        "git-credential-tokend": "git-credential",
        "bazel-credential-tokend": "bazel-credential",
    ]

    /// The arguments to parse: those after argv[0], behind the subcommand
    /// that argv[0]'s name stands for, if any.
    static func arguments(_ argv: [String]) -> [String] {
        let rest = Array(argv.dropFirst())
        guard let first = argv.first, let subcommand = subcommands[(first as NSString).lastPathComponent] else { return rest }
        return [subcommand] + rest
    }
}
