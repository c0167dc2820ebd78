import Foundation
import Logging
import TokendConfig
import TokendCore
import TokendFleet
import TokendVault

/// What the `tokend vault` commands need of a store, on SQLite and on the
/// fleet's PostgreSQL alike.
protocol MaintainedVault: VaultStore {
    /// How messages name the store (a path, or the database: never a password).
    var place: String { get }
    func verify() async throws -> VaultVerifyReport
    func info() async throws -> VaultInfo
    func rotateKEK(to newKEK: KeyEncryptionKey) async throws
    func rotateDEK(kek: KeyEncryptionKey) async throws -> DEKRotationReport
    func shutdown() async throws
}

extension SQLiteVault: MaintainedVault {
    var place: String { "vault \(path)" }
    func rotateDEK(kek: KeyEncryptionKey) async throws -> DEKRotationReport { try await rotateDEK() }
    func shutdown() async throws { try close() }
}

extension PostgresVault: MaintainedVault {
    var place: String { settings.displayName }
    func shutdown() async throws { await close() }
}

/// Opening the configured store, for the CLI.
enum VaultStores {
    static let logger = Logger(label: "tokend.vault")

    /// The fleet store's connection settings; a bad credential or field is
    /// a configuration problem (exit 2).
    static func fleetSettings(_ store: FleetStoreConfiguration) throws -> FleetSettings {
        do {
            return try FleetSettings(store)
        } catch let error as VaultError {
            throw HelperFailure(error.message, code: CLIExitCode.configuration)
        }
    }

    static func openFleet(_ store: FleetStoreConfiguration, kek: KeyEncryptionKey) async throws -> PostgresVault {
        try await PostgresVault.open(settings: try fleetSettings(store), kek: kek, logger: logger)
    }

    /// Creates the fleet store unless the database holds one already (then
    /// it is left as it is). Two hosts racing here create one store: the
    /// creation locks the metadata table and the loser finds it done.
    /// - Returns: whether this call created it.
    @discardableResult
    static func createFleetIfMissing(_ store: FleetStoreConfiguration, kek: KeyEncryptionKey) async throws -> Bool {
        do {
            let created = try await PostgresVault.create(settings: try fleetSettings(store), kek: kek, logger: logger)
            await created.close()
            return true
        } catch let error as VaultError where error.code == .alreadyExists {
            return false
        }
    }

    /// This host's directory of refresh results the fleet store has not
    /// taken yet, as the agent resolves it.
    static func heldResultsDirectory(_ vault: VaultConfiguration, _ store: FleetStoreConfiguration) -> String {
        store.heldResultsDirectory ?? ((vault.path as NSString).deletingLastPathComponent + "/fleet-held")
    }

    /// Refuses while this host holds results the store has not taken: they
    /// are sealed under the store's current data key and committed by the
    /// agent's next run, so retiring that key (rotate-dek) or leaving the
    /// store (migrate) would lose them, and with them the rotated refresh
    /// token. Other hosts' directories cannot be seen from here.
    static func requireNoHeldResults(_ vault: VaultConfiguration, _ store: FleetStoreConfiguration, before what: String) throws {
        let directory = heldResultsDirectory(vault, store)
        guard let files = FileManager.default.enumerator(atPath: directory) else { return }
        let held = files.compactMap { $0 as? String }.filter { $0.hasSuffix(".held") }
        guard !held.isEmpty else { return }
        throw VaultError(
            .locked,
            "this host holds \(held.count) refresh result(s) the fleet store has not taken yet (\(directory)); "
                + "start the agent so it commits them, stop it, then run \(what) again; nothing was changed")
    }
}
