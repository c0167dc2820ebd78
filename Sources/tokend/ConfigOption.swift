import ArgumentParser
import Foundation
import TokendConfig

/// `--config FILE`, shared by every command that reads the configuration.
struct ConfigOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "Configuration file (default: $TOKEND_CONFIG, else \(TokendConfiguration.defaultPath)).",
            valueName: "file"))
    var path: String?

    /// The configuration, or nil when none was asked for and the default
    /// file does not exist (commands then use built-in defaults and flags).
    func loadIfPresent() throws -> TokendConfiguration? {
        let resolved = ConfigLoader.resolvePath(path)
        let explicit = path != nil || ProcessInfo.processInfo.environment[TokendConfiguration.pathEnvironmentVariable] != nil
        guard explicit || FileManager.default.fileExists(atPath: resolved) else { return nil }
        return try load()
    }

    /// The configuration; a missing or broken file is an error (exit 2).
    func load() throws -> TokendConfiguration {
        do {
            return try ConfigLoader.load(path: ConfigLoader.resolvePath(path))
        } catch {
            for problem in error.problems { CLIExitCode.printError("tokend: config: \(problem)") }
            throw ExitCode(CLIExitCode.configuration)
        }
    }
}
