import ArgumentParser
import Logging
import TokendCore
import TokendVault

/// Where the vault and its key are. Secrets are never taken from argv: the
/// key comes from a file or a systemd credential.
struct VaultOptions: ParsableArguments {
    @Option(name: .customLong("vault"), help: ArgumentHelp("Path of the vault file.", valueName: "path"))
    var vaultPath: String = "/var/lib/tokend/vault.db"

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "File holding the 32-byte vault key (raw or base64, mode 0600 or 0400).", valueName: "path"))
    var keyFile: String?

    @Option(
        name: .customLong("key-credential"),
        help: ArgumentHelp(
            "Read the vault key from the systemd credential NAME ($CREDENTIALS_DIRECTORY/NAME) instead of a key file.",
            valueName: "name"))
    var keyCredential: String?

    static let defaultKeyFile = "/etc/tokend/vault.key"

    func validate() throws {
        if keyFile != nil && keyCredential != nil {
            throw ValidationError("Give either --key-file or --key-credential, not both.")
        }
    }

    var keySource: KeySource {
        if let keyCredential { return .credential(keyCredential) }
        return .file(keyFile ?? Self.defaultKeyFile)
    }

    func openVault(access: SQLiteVault.Access = .writer) throws -> SQLiteVault {
        let kek = try KeyEncryptionKey.load(from: keySource)
        return try SQLiteVault.open(
            at: vaultPath, kek: kek, access: access, logger: Logger(label: "tokend.vault"))
    }
}
