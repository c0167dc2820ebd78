import Crypto
import Foundation
import GRDB
import Logging
import Synchronization
import TokendCore

/// The encrypted-at-rest vault: one SQLite file (WAL, `synchronous=FULL`,
/// mode 0600) whose secret columns are sealed with AES-256-GCM.
///
/// Open it once per process; all access goes through GRDB's pool (one writer,
/// concurrent readers), so readers never see `SQLITE_BUSY` while a refresh
/// commits.
///
/// ```swift
/// let kek = try KeyEncryptionKey.load(from: .file("/etc/tokend/vault.key"))
/// let vault = try SQLiteVault.open(at: "/var/lib/tokend/vault.db", kek: kek, logger: logger)
/// let identities = try await vault.loadAll()
/// ```
package final class SQLiteVault: VaultStore {
    /// How a process uses the vault.
    package enum Access: Sendable {
        /// The one writer (the agent, or a maintenance command): takes the
        /// writer lock and applies pending migrations.
        case writer
        /// Read only, no lock (for `vault verify` beside a running agent).
        case reader
    }

    package let path: String
    package let access: Access
    let pool: DatabasePool
    let vaultID: Data
    let keyRing: Mutex<KeyRing>
    let wrapping: Mutex<KeyWrapping>
    let logger: Logger
    private let writerLock: WriterLock?

    private init(
        path: String, access: Access, pool: DatabasePool, vaultID: Data, keyRing: KeyRing,
        wrapping: KeyWrapping, writerLock: WriterLock?, logger: Logger
    ) {
        self.path = path
        self.access = access
        self.pool = pool
        self.vaultID = vaultID
        self.keyRing = Mutex(keyRing)
        self.wrapping = Mutex(wrapping)
        self.writerLock = writerLock
        self.logger = logger
    }

    /// Creates a new, empty vault at `path`, sealed under `kek`. Fails if a
    /// file exists there.
    package static func create(
        at path: String, kek: KeyEncryptionKey, logger: Logger = Logger(label: "tokend.vault")
    ) throws -> SQLiteVault {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FilePermissions.createPrivateDirectory(directory) }
        if try FilePermissions.mode(of: path) != nil {
            throw VaultError(.alreadyExists, "a vault already exists at \(path); nothing was changed")
        }
        let lock = try WriterLock(vaultPath: path)
        // SQLite would create the file with 0644 minus the umask, and its WAL
        // and shm files copy the main file's mode: create it 0600 first.
        try FilePermissions.createPrivateFile(path, contents: [])
        let pool = try makePool(path: path, readonly: false)
        let vaultID = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let wrapping = KeyWrapping(kek: kek, vaultID: vaultID)
        let dek = SymmetricKey(size: .bits256)
        let now = Date().timeIntervalSince1970
        try storage(path) {
            try VaultMigrations.migrator.migrate(pool)
            try pool.write { db in
                try db.execute(
                    sql: "INSERT INTO data_keys (term, wrapped, created_at) VALUES (1, ?, ?)",
                    arguments: [try wrapping.wrap(dek, term: 1), now])
                try db.execute(
                    sql: """
                        INSERT INTO vault_meta (singleton, vault_id, key_check, active_term, created_at)
                        VALUES (1, ?, ?, 1, ?)
                        """,
                    arguments: [vaultID, wrapping.checkValue, now])
            }
        }
        logger.info("vault created", metadata: ["tokend.vault.path": "\(path)"])
        return SQLiteVault(
            path: path, access: .writer, pool: pool, vaultID: vaultID,
            keyRing: KeyRing(keys: [1: dek], activeTerm: 1), wrapping: wrapping, writerLock: lock,
            logger: logger)
    }

    /// Opens an existing vault, checking file modes and the key first.
    ///
    /// - Throws: ``VaultError`` with `.missingFile` (no vault), `.insecurePermissions`,
    ///   `.keyMismatch` ("vault key does not match this vault"), `.locked`,
    ///   `.incompatible` or `.storage`. Nothing is written before the key check.
    package static func open(
        at path: String, kek: KeyEncryptionKey, access: Access = .writer,
        logger: Logger = Logger(label: "tokend.vault")
    ) throws -> SQLiteVault {
        guard try FilePermissions.mode(of: path) != nil else {
            throw VaultError(
                .missingFile, "no vault at \(path); create one with: tokend vault init --vault \(path)")
        }
        for file in [path, path + "-wal", path + "-shm"] {
            try FilePermissions.requirePrivate(file, what: "vault file")
        }
        // Check the key on a read-only connection before the pool opens:
        // opening a pool for writing touches the WAL, and a refused open
        // must leave the vault exactly as it was.
        let (vaultID, wrapping, keyRing) = try storage(path) {
            var configuration = Configuration()
            configuration.readonly = true
            let probe = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? probe.close() }
            return try probe.read { db in try readKeys(db, path: path, kek: kek) }
        }
        let pool = try makePool(path: path, readonly: access == .reader)
        var opened = false
        defer { if !opened { try? pool.close() } }
        // Locked only after the key check, so a wrong key is reported as
        // such even while the agent holds the lock.
        let lock = access == .writer ? try WriterLock(vaultPath: path) : nil
        try storage(path) {
            let migrator = VaultMigrations.migrator
            try pool.read { db in
                if try migrator.hasBeenSuperseded(db) {
                    throw VaultError(
                        .incompatible, "\(path) was written by a newer tokend; upgrade tokend to open it")
                }
            }
            if access == .writer {
                try migrator.migrate(pool)
            } else if try pool.read({ try !migrator.hasCompletedMigrations($0) }) {
                throw VaultError(
                    .incompatible,
                    "\(path) uses an older schema; start the agent (or run tokend vault rotate-dek) once to upgrade it")
            }
        }
        opened = true
        return SQLiteVault(
            path: path, access: access, pool: pool, vaultID: vaultID, keyRing: keyRing,
            wrapping: wrapping, writerLock: lock, logger: logger)
    }

    /// Reads the vault's id, checks `kek` against the stored key-check
    /// value and unwraps every data key.
    private static func readKeys(
        _ db: Database, path: String, kek: KeyEncryptionKey
    ) throws -> (Data, KeyWrapping, KeyRing) {
        guard try db.tableExists("vault_meta"),
            let meta = try Row.fetchOne(db, sql: "SELECT * FROM vault_meta WHERE singleton = 1")
        else {
            throw VaultError(.incompatible, "\(path) is not a tokend vault (no key metadata)")
        }
        let vaultID: Data = meta["vault_id"]
        let wrapping = KeyWrapping(kek: kek, vaultID: vaultID)
        guard wrapping.matches(meta["key_check"]) else {
            throw VaultError(
                .keyMismatch, "vault key does not match this vault: \(kek.origin) is not the key of \(path)")
        }
        var keys: [UInt32: SymmetricKey] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT term, wrapped FROM data_keys") {
            let term = UInt32(row["term"] as Int64)
            keys[term] = try wrapping.unwrap(row["wrapped"], term: term)
        }
        let active = UInt32(meta["active_term"] as Int64)
        guard keys[active] != nil else {
            throw VaultError(.corrupt, "active key term \(active) of \(path) has no data key")
        }
        return (vaultID, wrapping, KeyRing(keys: keys, activeTerm: active))
    }

    /// Closes the database; later calls fail.
    package func close() throws {
        defer { writerLock?.release() }
        if writerLock != nil {
            // Everything into the database file and the log emptied: a bulk
            // write (an import, a key rotation) otherwise leaves a log as
            // large as the vault, which doubles its size on disk and makes
            // the next agent's start read each page through the log's
            // index (about 0.2 s more for 100,000 identities). Best effort:
            // a reader in the middle of a transaction only delays it.
            do {
                try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            } catch {
                logger.notice("the vault's write-ahead log was not emptied at close", metadata: ["tokend.error": "\(error)"])
            }
        }
        try Self.storage(path) { try pool.close() }
    }

    private static func makePool(path: String, readonly: Bool) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.readonly = readonly
        // Another process (a CLI reader beside the agent) may briefly hold a
        // lock; wait instead of surfacing SQLITE_BUSY.
        configuration.busyMode = .timeout(10)
        configuration.label = "tokend.vault"
        configuration.prepareDatabase { db in
            // A committed refresh token must survive power loss: FULL syncs
            // the WAL on every commit. secure_delete overwrites freed pages,
            // so old ciphertexts do not linger in the file.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA secure_delete = ON")
            }
        }
        return try storage(path) {
            let pool = try DatabasePool(path: path, configuration: configuration)
            if !readonly {
                // GRDB switches the writer to synchronous=NORMAL when it sets
                // up WAL mode, after prepareDatabase ran; put FULL back.
                try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
            }
            return pool
        }
    }

    /// Runs `body`, turning SQLite errors into ``VaultError/Code/storage``
    /// with a message that names the file (GRDB errors never include
    /// statement arguments, so no secret can leak through them).
    static func storage<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw vaultError(error, path: path)
        }
    }

    /// A ``VaultError`` as it is; anything else as `storage`, naming the file.
    static func vaultError(_ error: any Error, path: String) -> VaultError {
        switch error {
        case let error as VaultError: error
        case let error as DatabaseError: VaultError(.storage, "vault \(path): \(error.message ?? "SQLite error \(error.resultCode)")")
        default: VaultError(.storage, "vault \(path): \(error)")
        }
    }

    func storage<T>(_ body: () throws -> T) throws -> T {
        try Self.storage(path, body)
    }

    func requireWriter() throws {
        guard access == .writer else {
            throw VaultError(.storage, "vault \(path) is open read-only")
        }
    }
}

extension SQLiteVault {
    func storage<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw Self.vaultError(error, path: path)
        }
    }
}
