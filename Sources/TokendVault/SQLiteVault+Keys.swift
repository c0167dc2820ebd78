import Crypto
import Foundation
import GRDB
import TokendCore

/// What `rotate-dek` did.
package struct DEKRotationReport: Sendable, Hashable {
    package var newTerm: UInt32
    package var resealedValues: Int
    package var retiredTerms: [UInt32]

    package init(newTerm: UInt32, resealedValues: Int, retiredTerms: [UInt32]) {
        self.newTerm = newTerm
        self.resealedValues = resealedValues
        self.retiredTerms = retiredTerms
    }
}

extension SQLiteVault {
    /// Rewraps every data key under `newKEK` and replaces the key check, in
    /// one transaction: afterwards only `newKEK` opens the vault; if anything
    /// fails, only the old one does.
    package func rotateKEK(to newKEK: KeyEncryptionKey) async throws {
        try requireWriter()
        let newWrapping = KeyWrapping(kek: newKEK, vaultID: vaultID)
        let keys = keyRing.withLock { $0.keys }
        try await storage {
            try await pool.write { db in
                for (term, key) in keys {
                    try db.execute(
                        sql: "UPDATE data_keys SET wrapped = ? WHERE term = ?",
                        arguments: [try newWrapping.wrap(key, term: term), Int64(term)])
                }
                try db.execute(
                    sql: "UPDATE vault_meta SET key_check = ?, kek_rotated_at = ? WHERE singleton = 1",
                    arguments: [newWrapping.checkValue, Date().timeIntervalSince1970])
            }
        }
        wrapping.withLock { $0 = newWrapping }
        logger.info("vault key-encryption key rotated", metadata: ["tokend.vault.path": "\(path)"])
    }

    /// Adds a new data-key term, re-seals every value under it, then retires
    /// the old terms.
    ///
    /// Safe to interrupt at any point (even `kill -9`): every value carries
    /// its own term, and an old term's key is deleted only in the final
    /// transaction, after a full scan finds nothing sealed under it. Running
    /// it again after an interruption finishes the job.
    package func rotateDEK(batchSize: Int = 500) async throws -> DEKRotationReport {
        try requireWriter()
        let newKey = SymmetricKey(size: .bits256)
        let wrapper = wrapping.withLock { $0 }
        let newTerm: UInt32 = try await storage {
            try await pool.write { db in
                let term = UInt32(try Int64.fetchOne(db, sql: "SELECT max(term) FROM data_keys") ?? 0) + 1
                try db.execute(
                    sql: "INSERT INTO data_keys (term, wrapped, created_at) VALUES (?, ?, ?)",
                    arguments: [Int64(term), try wrapper.wrap(newKey, term: term), Date().timeIntervalSince1970])
                try db.execute(sql: "UPDATE vault_meta SET active_term = ? WHERE singleton = 1", arguments: [Int64(term)])
                // Inside the write, so no concurrent write seals under the old term after this.
                self.keyRing.withLock { $0.add(term: term, key: newKey, makeActive: true) }
                return term
            }
        }

        var resealed = 0
        var after = ""
        while true {
            let start = after
            let (count, last) = try await storage {
                try await pool.write { db in try self.resealBatch(after: start, limit: batchSize, in: db) }
            }
            resealed += count
            guard let last else { break }
            after = last
        }

        let (finalCount, retired): (Int, [UInt32]) = try await storage {
            try await pool.write { db in
                // A final pass in the same transaction as the deletion: no
                // value may be left under a term whose key goes away.
                let count = try self.resealBatch(after: "", limit: Int.max, in: db).0
                let old = try Int64.fetchAll(db, sql: "SELECT term FROM data_keys WHERE term <> ?", arguments: [Int64(newTerm)])
                try db.execute(sql: "DELETE FROM data_keys WHERE term <> ?", arguments: [Int64(newTerm)])
                self.keyRing.withLock { $0.removeKeys(except: [newTerm]) }
                return (count, old.map { UInt32($0) }.sorted())
            }
        }
        resealed += finalCount
        logger.info(
            "vault data key rotated",
            metadata: ["tokend.vault.path": "\(path)", "tokend.vault.term": "\(newTerm)", "tokend.vault.resealed": "\(resealed)"])
        return DEKRotationReport(newTerm: newTerm, resealedValues: resealed, retiredTerms: retired)
    }

    /// Re-seals, under the active term, the values of up to `limit`
    /// identities after `after` (by name) that are sealed under another term.
    /// Returns how many values changed and the last name scanned (nil when
    /// the scan reached the end).
    private func resealBatch(after: String, limit: Int, in db: Database) throws -> (Int, String?) {
        let ring = keyRing.withLock { $0 }
        let columns = SecretKind.allCases.map(\.rawValue)
        let rows = try Row.fetchAll(
            db,
            sql: "SELECT name, \(columns.joined(separator: ", ")) FROM identities WHERE name > ? ORDER BY name LIMIT ?",
            arguments: [after, limit == Int.max ? -1 : limit])
        var changed = 0
        for row in rows {
            guard let name = IdentityName(row["name"]) else { continue }
            for kind in SecretKind.allCases {
                guard let envelope = row[kind.rawValue] as Data?, KeyRing.term(of: envelope) != ring.activeTerm
                else { continue }
                // A value that does not open stays as it is: the identity is
                // already corrupt, and re-sealing garbage would hide that.
                guard let secret = try? ring.open(envelope, identity: name, kind: kind) else { continue }
                try db.execute(
                    sql: "UPDATE identities SET \(kind.rawValue) = ? WHERE name = ?",
                    arguments: [try ring.seal(secret, identity: name, kind: kind), name.rawValue])
                changed += 1
            }
        }
        let last: String? = rows.count < limit || limit == Int.max ? nil : rows.last?["name"]
        return (changed, last)
    }
}
