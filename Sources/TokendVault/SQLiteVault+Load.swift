import Foundation
import GRDB
import TokendCore

/// Loading identities with their secrets opened, and recording the ones
/// whose values do not open as corrupt.
extension SQLiteVault {
    package func loadAll() async throws -> [StoredIdentity] {
        let (identities, corrupt) = try await load(where: nil)
        try await persistCorrupt(corrupt)
        return identities
    }

    package func identity(named name: IdentityName) async throws -> StoredIdentity? {
        let (identities, corrupt) = try await load(where: name)
        try await persistCorrupt(corrupt)
        return identities.first
    }

    /// Reads identities and opens their secrets. Identities whose values do
    /// not open are returned as `corrupt` (without secrets) and listed in the
    /// second element so the caller can persist or report them.
    ///
    /// Rows are read in batches whose values are opened on every core
    /// (``KeyRing/open(_:)``) while no more than one batch of sealed values
    /// is held: every value is still opened and checked, and the memory
    /// held at once is a batch, not the whole vault twice.
    func load(where name: IdentityName?) async throws -> ([StoredIdentity], [(IdentityName, String)]) {
        let ring = keyRing.withLock { $0 }
        return try await storage {
            try await pool.read { db in
                let rows = try Row.fetchCursor(
                    db,
                    sql: """
                        SELECT \(IdentityRow.metadataColumns), \(IdentityRow.secretColumns)
                        FROM identities WHERE ?1 IS NULL OR name = ?1 ORDER BY name
                        """,
                    arguments: [name?.rawValue])
                var identities: [StoredIdentity] = []
                // Sized once: growing it by doubling copies it and touches
                // memory twice over (100,000 identities are 25 MB here).
                identities.reserveCapacity(
                    name == nil ? try Int.fetchOne(db, sql: "SELECT count(*) FROM identities") ?? 0 : 1)
                var corrupt: [(IdentityName, String)] = []
                var batch: [SealedIdentity] = []
                batch.reserveCapacity(SealedIdentity.batchSize)
                // One batch is opened (on other threads) while the next is
                // read here: reading rows and opening values overlap.
                var opening: OpeningBatch?
                func collect() {
                    guard let done = opening?.finished() else { return }
                    opening = nil
                    for (sealed, opened) in zip(done.batch, done.answers) {
                        switch opened {
                        case .success(let secrets):
                            identities.append(StoredIdentity(record: sealed.record, secrets: secrets))
                        case .failure(let error):
                            corrupt.append((sealed.record.name, error.message))
                            identities.append(Self.corruptIdentity(sealed.record, reason: error.message))
                        }
                    }
                }
                func startOpening() {
                    let next = batch.isEmpty ? nil : OpeningBatch(batch, ring: ring)
                    batch = []
                    batch.reserveCapacity(SealedIdentity.batchSize)
                    collect()
                    opening = next
                }
                while let row = try rows.next() {
                    guard let name = (row[0] as String?).flatMap(IdentityName.init) else {
                        self.logger.error("vault row with an invalid identity name skipped")
                        continue
                    }
                    do {
                        let record = try IdentityRow.record(from: row, name: name)
                        let first = IdentityRow.firstSecretColumn
                        batch.append(SealedIdentity(
                            record: record,
                            envelopes: SecretKind.allCases.indices.map { row[first + $0] as Data? }))
                    } catch let error as VaultError {
                        // The metadata does not read: everything before it
                        // first, so the identities stay sorted by name.
                        startOpening()
                        collect()
                        corrupt.append((name, error.message))
                        identities.append(Self.corruptIdentity(row: row, name: name, reason: error.message))
                    }
                    if batch.count == SealedIdentity.batchSize { startOpening() }
                }
                startOpening()
                collect()
                return (identities, corrupt)
            }
        }
    }

    private static func corruptIdentity(_ record: IdentityRecord, reason: String) -> StoredIdentity {
        var record = record
        record.state = .corrupt
        record.lastError = reason
        return StoredIdentity(record: record, secrets: IdentitySecrets())
    }

    private static func corruptIdentity(row: Row, name: IdentityName, reason: String) -> StoredIdentity {
        let now = Date()
        var record =
            (try? IdentityRow.record(from: row, name: name))
            ?? IdentityRecord(
                name: name, provider: row["provider"] ?? "", grant: .refreshToken,
                createdAt: now, updatedAt: now)
        record.state = .corrupt
        record.lastError = reason
        return StoredIdentity(record: record, secrets: IdentitySecrets())
    }

    /// Records `corrupt` in the vault for identities newly found corrupt, so
    /// `STATUS` and `LIST` show it after a restart too. Readers skip this.
    private func persistCorrupt(_ corrupt: [(IdentityName, String)]) async throws {
        guard access == .writer, !corrupt.isEmpty else { return }
        for (name, reason) in corrupt {
            logger.error(
                "identity marked corrupt: a sealed value failed to open; re-enroll it to replace its secrets",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(reason)"])
        }
        try await storage {
            try await pool.write { db in
                for (name, reason) in corrupt {
                    try db.execute(
                        sql: """
                            UPDATE identities SET state = 'corrupt', last_error = ?, updated_at = ?
                            WHERE name = ? AND (state <> 'corrupt' OR last_error IS NOT ?)
                            """,
                        arguments: [reason, Date().timeIntervalSince1970, name.rawValue, reason])
                }
            }
        }
    }
}
