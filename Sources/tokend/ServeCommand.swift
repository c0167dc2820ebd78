import ArgumentParser
import Logging
import TokendAgent
import TokendConfig
import TokendCore

/// `tokend serve`: runs the agent in the foreground (systemd runs it so).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the agent: load the vault, keep every token fresh, until SIGTERM or SIGINT.",
        discussion: "Logs go to stderr, one line per event, never with a secret in them.")

    @OptionGroup var config: ConfigOption

    @Option(help: ArgumentHelp(
        "Log level: trace, debug, info, notice, warning, error, critical (default: [logging] level, else info).",
        valueName: "level"))
    var logLevel: Logger.Level?

    @Option(help: ArgumentHelp("Log line format: logfmt or json (default: [logging] format, else logfmt).", valueName: "format"))
    var logFormat: LogFormat?

    @Flag(help: "Create an empty vault first if there is none (the key must exist); for containers with a fresh volume.")
    var createVault = false

    /// Flags over the config file's `[logging]` over defaults. A broken
    /// config file is reported later, by `run`.
    func logSettings() -> (LogFormat, Logger.Level) {
        let logging = (try? ConfigLoader.load(path: ConfigLoader.resolvePath(config.path)))?.logging
        let format = logFormat ?? logging?.format ?? .logfmt
        let level = logLevel ?? logging?.level ?? .info
        return (format, level)
    }

    func run() async throws {
        let configuration = try config.load()
        let logger = Logger(label: "tokend")
        if OrphanReaping.enableIfInit() { logger.info("running as PID 1: orphaned processes are reaped") }
        if createVault { try await VaultBootstrap.createIfMissing(configuration.vault, logger: logger) }
        try await Agent.run(configuration: configuration, logger: logger)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
