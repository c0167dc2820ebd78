import Foundation
import GRDB
import Logging
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `tokend vault migrate`: the SQLite side, as source and as destination.
extension SQLiteVault {
    /// Everything in this vault with its secrets opened. Needs the writer
    /// lock (so no agent runs beside it) and refuses unfinished refreshes
    /// and values that do not open.
    package func exportForMigration() async throws -> VaultTransfer {
        try requireWriter()
        let intents = try await pendingIntents()
        let (identities, corrupt) = try await load(where: nil)
        try VaultTransfer.requireMovable(place: "vault \(path)", pendingIntents: intents, corrupt: corrupt)
        let retired: [String: Int64] = try await storage {
            try await pool.read { db in
                var retired: [String: Int64] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT name, generation FROM retired_generations") {
                    retired[row["name"]] = row["generation"]
                }
                return retired
            }
        }
        return VaultTransfer(identities: identities, retiredGenerations: retired)
    }

    /// Writes `transfer` as the vault at `path`, all or nothing: into
    /// `<path>.migrating` beside it, synced, then renamed into place. Holds
    /// `path`'s writer lock throughout, so no agent opens it meanwhile. An
    /// existing vault there is replaced only if it holds no identity.
    package static func writeMigrated(
        _ transfer: VaultTransfer, to path: String, kek: KeyEncryptionKey, logger: Logger = Logger(label: "tokend.vault")
    ) async throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FilePermissions.createPrivateDirectory(directory) }
        let lock = try WriterLock(vaultPath: path)
        defer { lock.release() }
        if try FilePermissions.mode(of: path) != nil {
            let existing = try open(at: path, kek: kek, access: .reader, logger: logger)
            let count = try await existing.info().identities
            try existing.close()
            guard count == 0 else {
                throw VaultError(
                    .alreadyExists, "vault \(path) already holds \(count) identity(ies); move it away first; nothing was changed")
            }
        }
        let temporary = path + ".migrating"
        let leftovers = [temporary, temporary + "-wal", temporary + "-shm", temporary + ".lock"]
        // Left by an earlier run that was killed; this process holds the lock.
        for file in leftovers { unlink(file) }
        do {
            let vault = try create(at: temporary, kek: kek, logger: logger)
            do {
                try await vault.importRows(transfer)
                try vault.close()
            } catch {
                try? vault.close()
                throw error
            }
            if let size = try? FileManager.default.attributesOfItem(atPath: temporary + "-wal")[.size] as? Int, size > 0 {
                throw VaultError(.storage, "vault \(temporary): the write-ahead log was not checkpointed; nothing was changed")
            }
            try syncFile(temporary)
            // A replaced empty vault's WAL must not be applied to the new file.
            for stale in [path + "-wal", path + "-shm"] { unlink(stale) }
            guard rename(temporary, path) == 0 else {
                throw VaultError(.storage, "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
            }
            try syncFile(directory.isEmpty ? "." : directory)
            unlink(temporary + ".lock")
        } catch {
            for file in leftovers { unlink(file) }
            throw error
        }
    }

    /// Inserts every identity (sealed under this vault's active term) and
    /// retired generation in one transaction, then checkpoints the WAL so
    /// the main file is complete on its own.
    private func importRows(_ transfer: VaultTransfer) async throws {
        try requireWriter()
        let ring = keyRing.withLock { $0 }
        try await storage {
            try await pool.write { db in
                for identity in transfer.identities {
                    let record = identity.record
                    let sealed = try identity.sealedValues(ring)
                    let columns = SecretKind.allCases.map(\.rawValue).joined(separator: ", ")
                    var arguments: StatementArguments = [
                        record.name.rawValue, record.provider, record.grant.rawValue, try IdentityRow.joinRules(record.allowRules),
                        record.refreshAt, record.state.rawValue, record.generation,
                        record.createdAt.timeIntervalSince1970, record.updatedAt.timeIntervalSince1970,
                        record.issuedAt?.timeIntervalSince1970, record.expiresAt?.timeIntervalSince1970,
                        record.tokenType, record.lastError, record.fromConfiguration ? "config" : "runtime", record.sessionGroup,
                    ]
                    for kind in SecretKind.allCases { arguments += [sealed[kind]] }
                    try db.execute(
                        sql: """
                            INSERT INTO identities (\(IdentityRow.metadataColumns), \(columns))
                            VALUES (\(Array(repeating: "?", count: 15 + SecretKind.allCases.count).joined(separator: ", ")))
                            """,
                        arguments: arguments)
                }
                for (name, generation) in transfer.retiredGenerations.sorted(by: { $0.key < $1.key }) {
                    try db.execute(
                        sql: "INSERT INTO retired_generations (name, generation) VALUES (?, ?)", arguments: [name, generation])
                }
            }
            try await pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        }
    }

    private static func syncFile(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw VaultError(.storage, "cannot open \(path) to sync it: \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw VaultError(.storage, "cannot sync \(path): \(String(cString: strerror(errno)))") }
    }
}
