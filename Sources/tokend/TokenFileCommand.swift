import ArgumentParser
import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `tokend token-file --identity X --path FILE [hook]`: keeps a file holding
/// the identity's current token, written as whoever runs the command (so
/// the agent's access rules decide), and runs a rotation hook after each
/// rewrite, so a program that reads its credential at start picks up the
/// new one without cron.
///
/// Hooks: signal the process named by a pid file (`--pid-file`,
/// `--signal`), and/or run a command (argv after `--`, no shell) with a
/// timeout. Both wait for `--debounce` seconds without a newer token. The
/// command gets the token on standard input only with `--token-stdin`.
struct TokenFileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token-file",
        abstract: "Keep an identity's token in a file; signal a process or run a command after each rotation.",
        discussion: """
            Example: tokend token-file --identity billing --path /run/billing/token --pid-file /run/nginx.pid --signal HUP
            tokend token-file --identity billing --path /run/billing/token --timeout 30 -- /usr/bin/systemctl reload billing
            """)

    @OptionGroup var options: HelperOptions
    @Option(help: "The identity whose token the file holds.") var identity: String
    @Option(help: "The file to keep (replaced atomically on each new token).") var path: String
    @Option(help: "The file's permission bits (octal; nothing for others).") var mode = "0600"
    @Option(name: .customLong("pid-file"), help: "After a rotation, signal the process whose pid this file holds.") var pidFile: String?
    @Option(help: "The signal for --pid-file.") var signal = "HUP"
    @Option(help: "Seconds a hook command may run before it is killed.") var timeout: Double = 30
    @Option(help: "Seconds without a newer token before the hooks run.") var debounce: Double = 1
    @Flag(name: .customLong("token-stdin"), help: "Give the hook command the token on its standard input.") var tokenStdin = false
    @Argument(parsing: .postTerminator, help: "The hook command and its arguments (after --), run without a shell.")
    var command: [String] = []

    var fileMode: mode_t? {
        guard let bits = Int(mode.hasPrefix("0o") ? String(mode.dropFirst(2)) : mode, radix: 8), (0...0o770).contains(bits),
            bits & 0o007 == 0, bits & 0o600 != 0
        else { return nil }
        return mode_t(bits)
    }

    func validate() throws {
        _ = try IdentityName.argument(identity)
        guard !path.isEmpty, !path.contains("\0") else { throw ValidationError("--path must be a path") }
        guard fileMode != nil else { throw ValidationError("--mode must be octal permission bits that grant nothing to others, e.g. 0600 or 0640") }
        guard SignalName.parse(signal) != nil else { throw ValidationError("--signal: unknown signal \(signal)") }
        if let pidFile, pidFile.isEmpty || pidFile.contains("\0") { throw ValidationError("--pid-file must be a path") }
        guard timeout.isFinite, (0.1...86_400).contains(timeout) else { throw ValidationError("--timeout must be 0.1 to 86400 seconds") }
        guard debounce.isFinite, (0...3600).contains(debounce) else { throw ValidationError("--debounce must be 0 to 3600 seconds") }
        if tokenStdin && command.isEmpty { throw ValidationError("--token-stdin needs a hook command after --") }
        if !command.isEmpty && command[0].isEmpty { throw ValidationError("the hook command is empty") }
        if command.contains(where: { $0.contains("\0") }) { throw ValidationError("arguments cannot contain NUL") }
    }

    func run() throws {
        let keeper: TokenFileKeeper
        do throws(HelperFailure) {
            let hook = RotationHook(
                pidFile: pidFile, signal: SignalName.parse(signal)!, command: command, tokenStdin: tokenStdin,
                timeout: .milliseconds(Int64(timeout * 1000)))
            keeper = try TokenFileKeeper(
                watcher: TokenWatcher(identity: IdentityName(identity)!, socketPath: try options.resolvedSocket()),
                file: PrivateTokenFile(path: path, mode: fileMode!), hook: hook, debounce: .milliseconds(Int64(debounce * 1000)))
        } catch {
            throw error
        }
        throw ExitCode(keeper.run())
    }
}
