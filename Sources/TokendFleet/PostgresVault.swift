import Crypto
import Foundation
import Logging
import PostgresNIO
import Synchronization
import TokendCore
import TokendVault

/// The vault on PostgreSQL, shared by a fleet of agents: the same tables as
/// the SQLite vault, every secret sealed by the same ``KeyRing`` (AES-GCM per
/// value, bound to identity, column and key term) under a key-encryption key
/// that only the hosts hold. The database and its operator see names,
/// metadata and ciphertext, never a token.
///
/// On top of ``VaultStore``: per-identity leases with fencing
/// (``acquireLease(name:holder:ttl:)``, ``commit(_:lease:)``) and a
/// `NOTIFY tokend_identity` with `<name> <generation>` on every change of
/// an identity's generation (see ``FleetListener``).
///
/// ```swift
/// let vault = try await PostgresVault.open(settings: settings, kek: kek, logger: logger)
/// defer { Task { await vault.close() } }
/// ```
package final class PostgresVault: VaultStore {
    package let settings: FleetSettings
    let client: PostgresClient
    private let runTask: Task<Void, Never>
    let vaultID: Data
    let keyRing: Mutex<KeyRing>
    let logger: Logger

    private init(
        settings: FleetSettings, client: PostgresClient, runTask: Task<Void, Never>, vaultID: Data, keyRing: KeyRing,
        logger: Logger
    ) {
        self.settings = settings
        self.client = client
        self.runTask = runTask
        self.vaultID = vaultID
        self.keyRing = Mutex(keyRing)
        self.logger = logger
    }

    /// Initializes an empty fleet store in the database (applying the
    /// migrations), sealed under `kek`. Fails with `.alreadyExists` if the
    /// database already holds one.
    package static func create(
        settings: FleetSettings, kek: KeyEncryptionKey, logger: Logger = Logger(label: "tokend.fleet")
    ) async throws -> PostgresVault {
        let vaultID = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let wrapping = KeyWrapping(kek: kek, vaultID: vaultID)
        let dek = SymmetricKey(size: .bits256)
        let wrapped = try wrapping.wrap(dek, term: 1)
        try await withMigratedConnection(settings, logger: logger) { connection in
            try await connection.withTransaction(logger: logger) { connection in
                // Locks the table so two hosts creating at once cannot both succeed.
                try await connection.query("LOCK TABLE vault_meta IN EXCLUSIVE MODE", logger: logger)
                let existing = try await connection.query("SELECT 1 FROM vault_meta", logger: logger).collect()
                guard existing.isEmpty else {
                    throw VaultError(.alreadyExists, "\(settings.displayName) already holds a tokend vault; nothing was changed")
                }
                try await connection.query("INSERT INTO data_keys (term, wrapped) VALUES (1, \(wrapped))", logger: logger)
                try await connection.query(
                    """
                    INSERT INTO vault_meta (singleton, vault_id, key_check, active_term)
                    VALUES (1, \(vaultID), \(wrapping.checkValue), 1)
                    """, logger: logger)
            }
        }
        logger.info("fleet vault created", metadata: ["tokend.fleet.database": "\(settings.displayName)"])
        let (client, task) = try startPool(settings, logger: logger)
        return PostgresVault(
            settings: settings, client: client, runTask: task, vaultID: vaultID,
            keyRing: KeyRing(keys: [1: dek], activeTerm: 1), logger: logger)
    }

    /// Opens the fleet store, applying pending migrations and checking the
    /// key first.
    ///
    /// - Throws: ``VaultError`` with `.keyMismatch`, `.incompatible` (no
    ///   vault there, or one written by a newer tokend), `.missingFile` (the
    ///   password or CA file) or `.storage` (the database is unreachable).
    package static func open(
        settings: FleetSettings, kek: KeyEncryptionKey, logger: Logger = Logger(label: "tokend.fleet")
    ) async throws -> PostgresVault {
        let (vaultID, keyRing) = try await withMigratedConnection(settings, logger: logger) { connection in
            try await readKeys(connection, settings: settings, kek: kek, logger: logger)
        }
        let (client, task) = try startPool(settings, logger: logger)
        return PostgresVault(
            settings: settings, client: client, runTask: task, vaultID: vaultID, keyRing: keyRing, logger: logger)
    }

    /// Closes the connection pool; later calls fail.
    package func close() async {
        runTask.cancel()
        await runTask.value
    }

    /// Runs `body` on a connection of its own after applying the
    /// migrations. A direct connection rather than the pool: it fails at
    /// once when the database is unreachable or refuses the login (the pool
    /// keeps retrying instead, postgres-nio issue 489).
    private static func withMigratedConnection<T: Sendable>(
        _ settings: FleetSettings, logger: Logger, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await storage(settings) {
            let connection = try await PostgresConnection.connect(
                configuration: try settings.connectionConfiguration(), id: 0, logger: logger)
            do {
                let applied = try await FleetMigrations.migrate(
                    connection, schema: settings.schema, place: settings.displayName, logger: logger)
                if !applied.isEmpty {
                    logger.info(
                        "fleet vault schema migrated",
                        metadata: ["tokend.fleet.database": "\(settings.displayName)", "tokend.fleet.migrations": "\(applied)"])
                }
                let result = try await body(connection)
                try await connection.close()
                return result
            } catch {
                try? await connection.close()
                throw error
            }
        }
    }

    private static func startPool(_ settings: FleetSettings, logger: Logger) throws -> (PostgresClient, Task<Void, Never>) {
        let client = PostgresClient(configuration: try settings.clientConfiguration(), backgroundLogger: logger)
        return (client, Task { await client.run() })
    }

    private static func readKeys(
        _ connection: PostgresConnection, settings: FleetSettings, kek: KeyEncryptionKey, logger: Logger
    ) async throws -> (Data, KeyRing) {
        let metaRows = try await connection.query(
            "SELECT vault_id, key_check, active_term FROM vault_meta WHERE singleton = 1", logger: logger
        ).collect()
        guard let meta = metaRows.first?.makeRandomAccess() else {
            throw VaultError(
                .incompatible, "\(settings.displayName) holds no tokend vault yet; create one first")
        }
        let vaultID = try meta["vault_id"].decode(Data.self)
        let wrapping = KeyWrapping(kek: kek, vaultID: vaultID)
        guard wrapping.matches(try meta["key_check"].decode(Data.self)) else {
            throw VaultError(
                .keyMismatch, "vault key does not match this vault: \(kek.origin) is not the key of \(settings.displayName)")
        }
        var keys: [UInt32: SymmetricKey] = [:]
        for try await (term, wrapped) in try await connection.query(
            "SELECT term, wrapped FROM data_keys", logger: logger
        ).decode((Int64, Data).self) {
            keys[UInt32(term)] = try wrapping.unwrap(wrapped, term: UInt32(term))
        }
        let active = UInt32(try meta["active_term"].decode(Int64.self))
        guard keys[active] != nil else {
            throw VaultError(.corrupt, "active key term \(active) of \(settings.displayName) has no data key")
        }
        return (vaultID, KeyRing(keys: keys, activeTerm: active))
    }

    // MARK: - Errors

    /// Runs `body`, turning database errors into ``VaultError/Code/storage``.
    /// The message carries the server's message and SQLSTATE only: never a
    /// statement's bound values, nor the server's `DETAIL` (which can quote a row).
    static func storage<T>(_ settings: FleetSettings, _ body: () async throws -> sending T) async throws -> sending T {
        do {
            return try await body()
        } catch {
            throw vaultError(error, settings: settings)
        }
    }

    static func vaultError(_ error: any Error, settings: FleetSettings) -> VaultError {
        switch error {
        case let error as VaultError:
            return error
        case let error as PostgresTransactionError:
            if let inner = error.closureError ?? error.beginError ?? error.commitError {
                return vaultError(inner, settings: settings)
            }
            return VaultError(.storage, "\(settings.displayName): transaction failed")
        case let error as PSQLError:
            if let message = error.serverInfo?[.message] {
                let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return VaultError(.storage, "\(settings.displayName): \(message)\(state)")
            }
            // Connection failures (refused, TLS, authentication) name their cause.
            let cause = error.underlying.map { ": \($0)" } ?? ""
            return VaultError(.storage, "\(settings.displayName): \(error.code)\(cause)")
        default:
            return VaultError(.storage, "\(settings.displayName): \(type(of: error))")
        }
    }
}

