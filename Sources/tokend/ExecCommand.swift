import ArgumentParser
import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `tokend exec --identity X (--env NAME | --file PATH) -- CMD ARGS`: runs
/// CMD with the identity's token and keeps it current.
///
/// The token reaches only the child: in its environment (`--env`; nothing
/// else's) or in a private file (`--file`, mode 0600, removed at the end).
/// On rotation (`WATCH`), after `--debounce` seconds of quiet, the child is
/// restarted (`--stop-signal`, then SIGKILL after `--grace` seconds) or,
/// with `--file`, sent `--rotate-signal` once the file holds the new token.
/// Signals sent to `tokend exec` are forwarded; it exits with the child's
/// status (128 + N if a signal N ended the child).
struct ExecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command with an identity's token; restart or signal it when the token rotates.",
        discussion: "Example: tokend exec --identity billing --env API_TOKEN -- /usr/bin/billing-worker --serve")

    @OptionGroup var options: HelperOptions
    @Option(help: "The identity whose token the command gets.") var identity: String
    @Option(help: "Give the token in this environment variable.") var env: String?
    @Option(help: "Give the token in this file (mode 0600, removed when the command ends).") var file: String?
    @Option(name: .customLong("rotate-signal"), help: "On rotation send this signal (e.g. HUP) instead of restarting (needs --file).")
    var rotateSignal: String?
    @Option(name: .customLong("stop-signal"), help: "The signal that stops the command for a restart.") var stopSignal = "TERM"
    @Option(help: "Seconds to wait after --stop-signal before SIGKILL.") var grace: Double = 10
    @Option(help: "Seconds without a newer token before acting on a rotation.") var debounce: Double = 1
    @Argument(parsing: .postTerminator, help: "The command and its arguments (after --).") var command: [String] = []

    func validate() throws {
        _ = try IdentityName.argument(identity)
        guard (env == nil) != (file == nil) else { throw ValidationError("Give exactly one of --env NAME and --file PATH.") }
        if let env, env.wholeMatch(of: #/[A-Za-z_][A-Za-z0-9_]{0,127}/#) == nil {
            throw ValidationError("--env must be a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        }
        if let file, file.isEmpty || file.contains("\0") { throw ValidationError("--file must be a path") }
        if let rotateSignal {
            guard SignalName.parse(rotateSignal) != nil else { throw ValidationError("--rotate-signal: unknown signal \(rotateSignal)") }
            guard file != nil else { throw ValidationError("--rotate-signal needs --file: a running program cannot see a new environment") }
        }
        guard SignalName.parse(stopSignal) != nil else { throw ValidationError("--stop-signal: unknown signal \(stopSignal)") }
        guard grace.isFinite, (0...3600).contains(grace) else { throw ValidationError("--grace must be 0 to 3600 seconds") }
        guard debounce.isFinite, (0...3600).contains(debounce) else { throw ValidationError("--debounce must be 0 to 3600 seconds") }
        guard !command.isEmpty, !command[0].isEmpty else { throw ValidationError("Give the command to run after --.") }
        if command.contains(where: { $0.contains("\0") }) { throw ValidationError("arguments cannot contain NUL") }
    }

    /// Blocks in poll(2) until the child is gone; nothing else runs in
    /// this process meanwhile, so no async work is starved.
    func run() throws {
        let supervisor: ExecSupervisor
        do throws(HelperFailure) {
            supervisor = try ExecSupervisor(
                watcher: TokenWatcher(identity: IdentityName(identity)!, socketPath: try options.resolvedSocket()),
                delivery: env.map { ExecSupervisor.Delivery.environment($0) } ?? .file(PrivateTokenFile(path: file!)),
                command: command, rotateSignal: rotateSignal.flatMap(SignalName.parse), stopSignal: SignalName.parse(stopSignal)!,
                grace: .milliseconds(Int64(grace * 1000)), debounce: .milliseconds(Int64(debounce * 1000)))
        } catch {
            throw error
        }
        throw ExitCode(supervisor.run())
    }
}
