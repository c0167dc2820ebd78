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
}
