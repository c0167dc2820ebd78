import ArgumentParser
import Logging
import TokendCore

/// The `tokend` command: the agent and its command-line client in one binary.
@main
struct Tokend: AsyncParsableCommand {

    static let configuration = CommandConfiguration(
        commandName: "tokend",
        abstract: "Keeps OAuth access tokens fresh for the programs on this host.",
        discussion: """
            tokend holds refresh tokens in an encrypted vault and refreshes access tokens \
            before they expire. See `tokend help <subcommand>` and the README.

            Exit codes: \(CLIExitCode.summary)
            """,
        version: TokendVersion.current,
        subcommands: [VaultCommand.self, TransmitCommand.self, CheckConfigCommand.self]
    )

    static func main() async {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as VaultError {
            CLIExitCode.fail(error.message, code: CLIExitCode.for(error))
        } catch {
            exit(withError: error)
        }
    }
}
