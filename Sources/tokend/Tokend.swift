import ArgumentParser
import Metrics
import Prometheus
import Logging
import TokendAgent
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
        subcommands: [
            ServeCommand.self, QuickstartCommand.self, GetCommand.self, StatusCommand.self, ListCommand.self, WatchCommand.self, EnrollCommand.self,
            RemoveCommand.self, RefreshCommand.self, StatsCommand.self, ReloadCommand.self, VaultCommand.self,
            TransmitCommand.self, CheckConfigCommand.self, HealthCommand.self,
            ExecCommand.self, TokenFileCommand.self, KubeCredentialCommand.self, GitCredentialCommand.self,
            DockerCredentialCommand.self, BazelCredentialCommand.self,
        ]
    )

    static func main() async {
        do {
            var command = try parseAsRoot(HelperAlias.arguments(CommandLine.arguments))
            // The agent logs at the level and in the format asked for; the
            // one-shot commands only warn.
            var (format, level) = (command as? ServeCommand).map { $0.logSettings() } ?? (.logfmt, .warning)
            if command is QuickstartCommand { level = .info }
            if command is ServeCommand || command is QuickstartCommand {
                MetricsSystem.bootstrap(PrometheusMetricsFactory())
            }
            let (logFormat, logLevel) = (format, level)
            LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: logFormat, level: logLevel) }
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as VaultError {
            CLIExitCode.fail(error.message, code: CLIExitCode.for(error))
        } catch let error as ProviderError {
            CLIExitCode.fail(error.message, code: CLIExitCode.for(error))
        } catch let error as HelperFailure {
            CLIExitCode.fail(error.message, code: error.code)
        } catch let error as Agent.Failure {
            CLIExitCode.fail(error.description, code: CLIExitCode.configuration)
        } catch {
            // ArgumentParser's own outcomes (usage errors, --help, an
            // ExitCode a command chose) keep their codes. Anything else
            // would exit 1, which means "corrupt values found".
            if error is ExitCode || exitCode(for: error) != .failure { exit(withError: error) }
            CLIExitCode.fail(message(for: error), code: CLIExitCode.otherFailure)
        }
    }
}
