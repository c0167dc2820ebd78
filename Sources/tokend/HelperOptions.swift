import ArgumentParser
import Foundation
import TokendConfig
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `--config` and `--socket` for the credential helpers and the long-running
/// client commands (`exec`, `token-file`).
///
/// They read only the socket path and the `[hosts]` table, never the
/// agent's secret files: whoever runs a helper needs the agent's socket
/// and its access rules, not the agent's privileges.
struct HelperOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp("Configuration file (default: $TOKEND_CONFIG, else \(TokendConfiguration.defaultPath)).", valueName: "file"))
    var configPath: String?

    @Option(
        name: .customLong("socket"),
        help: ArgumentHelp("The agent's socket (default: from the config, else /run/tokend/tokend.sock).", valueName: "path"))
    var socketPath: String?

    func clientConfiguration() throws(HelperFailure) -> ClientConfiguration {
        let explicit = configPath != nil || ProcessInfo.processInfo.environment[TokendConfiguration.pathEnvironmentVariable] != nil
        do {
            var configuration = try ConfigLoader.loadClient(path: ConfigLoader.resolvePath(configPath), explicit: explicit)
            if let socketPath { configuration.socketPath = socketPath }
            return configuration
        } catch {
            throw HelperFailure(error.problems.map(\.description).joined(separator: "; "), code: CLIExitCode.configuration)
        }
    }

    /// The socket path, reading the configuration only when `--socket` is not given.
    func resolvedSocket() throws(HelperFailure) -> String {
        if let socketPath { return socketPath }
        return try clientConfiguration().socketPath
    }
}

/// Why a helper could not answer: a message for stderr (never a token) and an exit code.
struct HelperFailure: Error {
    var message: String
    var code: Int32

    init(_ message: String, code: Int32) {
        self.message = message
        self.code = code
    }
}

extension HelperFailure {
    /// A program that could not be started: 127, as a shell reports it.
    init(_ failure: Spawn.Failure) {
        self.init(failure.description, code: 127)
    }
}

extension IdentityName {
    /// An identity named on the command line, or a usage error.
    static func argument(_ text: String) throws -> IdentityName {
        guard let name = IdentityName(text) else {
            throw ValidationError("\(text.debugDescription) is not a valid identity name ([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})")
        }
        return name
    }
}
