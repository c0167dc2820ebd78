import Foundation
import Logging
import TokendConfig
import TokendCore
import TokendVault

/// `serve --create-vault`: a container starts from an empty volume, and a
/// separate `vault init` step that must not run twice is awkward there.
enum VaultBootstrap {
    /// Creates an empty vault at the configured path if there is no file
    /// there, sealed under the configured key. The key itself is never
    /// created: it comes from a mounted secret, and a key the agent made up
    /// would exist only inside the container.
    static func createIfMissing(_ vault: VaultConfiguration, logger: Logger) throws {
        var info = stat()
        guard lstat(vault.path, &info) != 0 else { return }
        guard errno == ENOENT else {
            throw VaultError(.storage, "cannot look at \(vault.path): \(String(cString: strerror(errno)))")
        }
        let kek = try KeyEncryptionKey.load(from: vault.keySource)
        try SQLiteVault.create(at: vault.path, kek: kek).close()
        logger.notice("created a new, empty vault (--create-vault)", metadata: ["tokend.vault.path": "\(vault.path)"])
    }
}
