import ArgumentParser
import Foundation
import TokendConfig
import TokendCore
import TokendFleet
import TokendVault

/// `tokend vault migrate --to postgresql|sqlite`: moves every identity
/// between the host's SQLite vault (`[vault] path`) and the fleet store
/// (`[vault.postgresql]`), all or nothing. The source is left as it is.
struct VaultMigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Move the vault between SQLite ([vault] path) and the fleet store ([vault.postgresql]), all or nothing.",
        discussion: """
            Both stores seal with the same key (key_file or key_credential); every secret is re-sealed under the \
            destination's data key. Everything moves: generation, state, token times and type, allow rules, refresh \
            point, session groups, whether the configuration declared it, the last error. The destination must hold no \
            identity. Refuses while an agent uses the source (stop the agents first) or refreshes are unfinished. \
            Into PostgreSQL it is one transaction; into SQLite a file beside the target, synced and renamed into place. \
            The source is not changed. Afterwards set [vault] backend to the destination and restart the agent(s).
            """)

    enum Destination: String, ExpressibleByArgument, CaseIterable {
        case postgresql
        case sqlite
    }

    @OptionGroup var vault: VaultOptions

    @Option(help: ArgumentHelp("Where to move the vault: postgresql or sqlite.", valueName: "backend"))
    var to: Destination

    func run() async throws {
        let settings = try vault.resolved()
        let file = ConfigLoader.resolvePath(vault.config.path)
        guard let store = settings.fleetStore else {
            throw HelperFailure(
                "\(file) has no [vault.postgresql] table: it says which database to move \(to == .postgresql ? "into" : "from")",
                code: CLIExitCode.configuration)
        }
        let kek = try KeyEncryptionKey.load(from: settings.keySource)
        let fleetSettings = try VaultStores.fleetSettings(store)
        let moved: Int
        switch to {
        case .postgresql:
            // The writer lock: no agent runs on the SQLite vault meanwhile.
            let source = try SQLiteVault.open(at: settings.path, kek: kek, access: .writer, logger: VaultStores.logger)
            do {
                let transfer = try await source.exportForMigration()
                try await VaultStores.createFleetIfMissing(store, kek: kek)
                let destination = try await PostgresVault.open(settings: fleetSettings, kek: kek, logger: VaultStores.logger)
                do {
                    try await destination.importForMigration(transfer)
                } catch {
                    await destination.close()
                    throw error
                }
                await destination.close()
                moved = transfer.identities.count
            } catch {
                try? source.close()
                throw error
            }
            try source.close()
            print("moved \(moved) identities from vault \(settings.path) into \(store.displayName)")
            print("vault \(settings.path) is unchanged; remove it once the fleet store serves")
        case .sqlite:
            let source = try await PostgresVault.open(settings: fleetSettings, kek: kek, logger: VaultStores.logger)
            do {
                let transfer = try await source.exportForMigration()
                try await SQLiteVault.writeMigrated(transfer, to: settings.path, kek: kek, logger: VaultStores.logger)
                moved = transfer.identities.count
            } catch {
                await source.close()
                throw error
            }
            await source.close()
            print("moved \(moved) identities from \(store.displayName) into vault \(settings.path)")
            print("\(store.displayName) is unchanged")
        }
        if settings.backend.name == to.rawValue {
            print("next: restart the agent(s)")
        } else {
            print("next: set [vault] backend = \"\(to.rawValue)\" in \(file) and restart the agent(s)")
        }
    }
}
