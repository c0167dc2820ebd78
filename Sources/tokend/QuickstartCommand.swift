import ArgumentParser
import Logging
import TokendQuickstart

/// `tokend quickstart`: the whole agent with a demo provider, in one command.
struct QuickstartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "Run a complete demo: temporary vault, demo OAuth2 provider on loopback, agent on a temporary socket.",
        discussion: "Prints what to type in a second terminal. Ctrl-C stops it and removes every file it made.")

    @Option(help: "Lifetime of the demo's access tokens, in seconds.") var lifetime: Int = 30

    func validate() throws {
        guard (5...3600).contains(lifetime) else { throw ValidationError("--lifetime must be 5 to 3600 seconds") }
    }

    func run() async throws {
        try await Quickstart.run(lifetime: lifetime, logger: Logger(label: "tokend"))
    }
}
