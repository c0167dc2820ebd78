import ArgumentParser
import Foundation
import TokendConfig
import TokendCore
import TokendFleet

/// `tokend check-config`: validates the configuration without starting.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration file and the secret files it names, then exit.",
        discussion: "Prints every problem with its file and key and exits 2, or prints a summary and exits 0.")

    @OptionGroup var config: ConfigOption

    func run() async throws {
        let configuration = try config.load()
        switch configuration.vault.backend {
        case .sqlite:
            print("\(configuration.file): OK")
            print("vault: \(configuration.vault.path) (\(configuration.vault.keySource))")
        case .postgresql(let store):
            try Self.checkFleetStore(store, file: configuration.file)
            print("\(configuration.file): OK")
            print("vault: \(store.displayName) (\(configuration.vault.keySource); lease \(store.leaseSeconds) s)")
        }
        for provider in configuration.providers {
            print("provider \(provider.name): \(provider.kind)")
        }
    }

    /// The files the fleet store's table names: the password source resolves
    /// and is private, the CA file is readable. Connects to nothing.
    static func checkFleetStore(_ store: FleetStoreConfiguration, file: String) throws {
        var problems: [String] = []
        var checked = store
        if case .credential(let name) = store.password, ProcessInfo.processInfo.environment["CREDENTIALS_DIRECTORY"] == nil {
            // As with the vault key's credential: it exists only inside the
            // unit (LoadCredential=), so outside it (an operator's shell,
            // `tokend check-config && systemctl reload tokend`) it is
            // checked when the agent starts.
            print("vault.postgresql.password_credential: \(name) is checked when the agent starts (no CREDENTIALS_DIRECTORY here)")
            checked.password = .none
        }
        do {
            let settings = try FleetSettings(checked)
            do { try settings.checkPassword() } catch let error as VaultError {
                let key = if case .credential = store.password { "password_credential" } else { "password_file" }
                problems.append("vault.postgresql.\(key): \(error.message)")
            }
        } catch let error as VaultError {
            problems.append("vault.postgresql: \(error.message)")
        }
        if case .verifyFull(let caFile) = store.tls, !FileManager.default.isReadableFile(atPath: caFile) {
            problems.append("vault.postgresql.ca_file: \(caFile) does not exist or is not readable")
        }
        guard !problems.isEmpty else { return }
        for problem in problems { CLIExitCode.printError("tokend: config: \(file): \(problem)") }
        throw ExitCode(CLIExitCode.configuration)
    }
}
