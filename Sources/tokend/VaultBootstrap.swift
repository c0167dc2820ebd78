import Foundation
import Logging
import TokendConfig
import TokendCore
import TokendFleet
import TokendVault

/// `serve --create-vault`: a container starts from an empty volume, and a
/// separate `vault init` step that must not run twice is awkward there.
enum VaultBootstrap {
    /// Creates an empty vault if there is none, sealed under the configured
    /// key: a SQLite file at the configured path, or the fleet store's tables
    /// in the configured database (hosts starting together create one store;
    /// the others find it there). The key itself is never created: it comes
    /// from a mounted secret, and a key the agent made up would exist only
    /// inside the container.
    static func createIfMissing(_ vault: VaultConfiguration, logger: Logger) async throws {
        if case .postgresql(let store) = vault.backend {
            let kek = try KeyEncryptionKey.load(from: vault.keySource)
            if try await VaultStores.createFleetIfMissing(store, kek: kek) {
                logger.notice(
                    "created a new, empty fleet vault (--create-vault)", metadata: ["tokend.fleet.database": "\(store.displayName)"])
            }
            return
        }
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
