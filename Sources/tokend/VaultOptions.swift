import ArgumentParser
import Logging
import TokendConfig
import TokendCore
import TokendFleet
import TokendVault

/// Where the vault and its key are: from the configuration file, overridden
/// by flags. Secrets are never taken from argv: the key comes from a file or
/// a systemd credential.
struct VaultOptions: ParsableArguments {
    @OptionGroup var config: ConfigOption

    @Option(
        name: .customLong("vault"),
        help: ArgumentHelp(
            "Path of the SQLite vault file (default: from the config, else \(VaultConfiguration.defaultPath)); with backend = \"postgresql\" only vault migrate uses it.",
            valueName: "path"))
    var vaultPath: String?

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "File holding the 32-byte vault key (raw or base64, mode 0600 or 0400; default: from the config, else \(VaultConfiguration.defaultKeyFile)).",
            valueName: "path"))
    var keyFile: String?

    @Option(
        name: .customLong("key-credential"),
        help: ArgumentHelp(
            "Read the vault key from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME) instead of a key file.",
            valueName: "name"))
    var keyCredential: String?

    func validate() throws {
        if keyFile != nil && keyCredential != nil {
            throw ValidationError("Give either --key-file or --key-credential, not both.")
        }
    }

    /// The vault settings: flags over the config file over defaults.
    func resolved() throws -> VaultConfiguration {
        var vault = try config.loadIfPresent()?.vault ?? VaultConfiguration()
        if let vaultPath { vault.path = vaultPath }
        if let keyFile { vault.keySource = .file(keyFile) }
        if let keyCredential { vault.keySource = .credential(keyCredential) }
        return vault
    }

    func openVault(access: SQLiteVault.Access = .writer) throws -> (SQLiteVault, VaultConfiguration) {
        let settings = try resolved()
        let kek = try KeyEncryptionKey.load(from: settings.keySource)
        let vault = try SQLiteVault.open(
            at: settings.path, kek: kek, access: access, logger: Logger(label: "tokend.vault"))
        return (vault, settings)
    }

    /// The configured store: the SQLite file, or the fleet store when the
    /// configuration says `backend = "postgresql"`.
    func openStore(access: SQLiteVault.Access = .writer) async throws -> (any MaintainedVault, VaultConfiguration) {
        let settings = try resolved()
        switch settings.backend {
        case .sqlite:
            let (vault, settings) = try openVault(access: access)
            return (vault, settings)
        case .postgresql(let store):
            let kek = try KeyEncryptionKey.load(from: settings.keySource)
            return (try await VaultStores.openFleet(store, kek: kek), settings)
        }
    }
}
