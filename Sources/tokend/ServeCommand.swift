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

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical.", valueName: "level"))
    var logLevel: Logger.Level = .info

    @Option(help: ArgumentHelp("Log line format: logfmt or json.", valueName: "format"))
    var logFormat: LogFormat = .logfmt

    func run() async throws {
        let configuration = try config.load()
        let logger = Logger(label: "tokend")
        try await Agent.run(configuration: configuration, logger: logger)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
