import ArgumentParser
import TokendConfig
import TokendCore

/// `tokend check-config`: validates the configuration without starting.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration file and the secret files it names, then exit.",
        discussion: "Prints every problem with its file and key and exits 2, or prints a summary and exits 0.")

    @OptionGroup var config: ConfigOption

    func run() async throws {
        let configuration = try config.load()
        print("\(configuration.file): OK")
        print("vault: \(configuration.vault.path) (\(configuration.vault.keySource))")
        for provider in configuration.providers {
            print("provider \(provider.name): \(provider.kind)")
        }
    }
}
