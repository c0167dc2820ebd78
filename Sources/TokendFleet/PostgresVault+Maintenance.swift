import Crypto
import Foundation
import PostgresNIO
import TokendCore
import TokendVault

/// `tokend vault verify`, `info`, `rotate-kek` and `rotate-dek` on the
/// fleet store, with the same reports as the SQLite vault.
extension PostgresVault {
    /// Opens every sealed value without changing anything (a corrupt value
    /// is reported, not recorded: verify is read-only).
    package func verify() async throws -> VaultVerifyReport {
        let (identities, corrupt) = try await load(where: nil)
        return VaultVerifyReport(
            identities: identities.count,
            corrupt: corrupt.map { VaultVerifyReport.Problem(identity: $0.0, reason: $0.1) })
    }

    /// Facts that hold no secret: counts by state, key terms, unfinished
    /// refreshes, live leases and the migrations applied.
    package func info() async throws -> VaultInfo {
        try await storage { [self] in
            try await client.withConnection { connection in
                var byState: [IdentityState: Int] = [:]
                var total = 0
                for try await (state, count) in try await connection.query(
                    "SELECT state, count(*) FROM identities GROUP BY state", logger: self.logger
                ).decode((String, Int64).self) {
                    total += Int(count)
                    if let state = IdentityState(rawValue: state) { byState[state] = Int(count) }
                }
                var terms: [UInt32] = []
                for try await term in try await connection.query("SELECT term FROM data_keys ORDER BY term", logger: self.logger)
                    .decode(Int64.self)
                { terms.append(UInt32(term)) }
                let active = try await connection.query("SELECT active_term FROM vault_meta WHERE singleton = 1", logger: self.logger)
                    .decode(Int64.self).allElements().first ?? 0
                let intents = try await connection.query("SELECT count(*) FROM refresh_intents", logger: self.logger)
                    .decode(Int64.self).allElements().first ?? 0
                var migrations: [String] = []
                for try await name in try await connection.query(
                    "SELECT name FROM tokend_migrations ORDER BY applied_at, name", logger: self.logger
                ).decode(String.self) { migrations.append(name) }
                return VaultInfo(
                    identities: total, byState: byState, keyTerms: terms, activeTerm: UInt32(active),
                    pendingIntents: Int(intents), migrations: migrations)
            }
        }
    }

    /// How many leases are held now (by the database clock).
    package func liveLeases() async throws -> Int {
        try await storage { [self] in
            Int(try await client.query("SELECT count(*) FROM leases WHERE expires_at > clock_timestamp()", logger: logger)
                .decode(Int64.self).allElements().first ?? 0)
        }
    }

    /// Other sessions of this database user on this database: agents of the
    /// fleet (their pools and listeners) or an operator's psql. Commands that
    /// must not run beside an agent (rotate-dek, migrate) refuse while any
    /// is connected, as the SQLite vault's writer lock refuses a second writer.
    /// A session that is closing (a command that just finished, or this
    /// process's own first connection) leaves within moments, so this waits
    /// up to `grace` for the count to reach zero before refusing.
    package func requireNoOtherSessions(for what: String, grace: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + grace
        while true {
            let rows = try await storage { [self] in
                try await client.withConnection { connection in
                    try await connection.query(
                        """
                        SELECT count(*), coalesce(string_agg(DISTINCT coalesce(nullif(application_name, ''), '?'), ', '), '')
                        FROM pg_stat_activity
                        WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()
                          AND backend_type = 'client backend'
                        """, logger: self.logger
                    ).decode((Int64, String).self).allElements()
                }
            }
            guard let (count, names) = rows.first, count > 0 else { return }
            if ContinuousClock.now >= deadline {
                throw VaultError(
                    .locked,
                    "\(settings.displayName) has \(count) other session(s) of this user (\(String(names.prefix(200)))); "
                        + "stop the agents on every host before \(what)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Re-wraps every data key under `newKEK` and replaces the key check in
    /// one transaction: afterwards only `newKEK` opens the store (running
    /// agents keep working, they hold the data keys already; every host
    /// needs the new key before its next start).
    package func rotateKEK(to newKEK: KeyEncryptionKey) async throws {
        let newWrapping = KeyWrapping(kek: newKEK, vaultID: vaultID)
        let keys = keyRing.withLock { $0.keys }
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT 1 FROM vault_meta WHERE singleton = 1 FOR UPDATE", logger: self.logger)
                let terms = try await connection.query("SELECT term FROM data_keys", logger: self.logger).decode(Int64.self).allElements()
                for term in terms {
                    guard let key = keys[UInt32(term)] else {
                        throw VaultError(.storage, "data key term \(term) appeared while rotating; run rotate-kek again")
                    }
                    let wrapped = try newWrapping.wrap(key, term: UInt32(term))
                    try await connection.query("UPDATE data_keys SET wrapped = \(wrapped) WHERE term = \(term)", logger: self.logger)
                }
                try await connection.query(
                    "UPDATE vault_meta SET key_check = \(newWrapping.checkValue), kek_rotated_at = now() WHERE singleton = 1",
                    logger: self.logger)
            }
        }
        logger.info("fleet vault key-encryption key rotated", metadata: ["tokend.fleet.database": "\(settings.displayName)"])
    }

    /// Adds a data-key term (wrapped under `kek`, which must be this
    /// store's), re-seals every value under it in batches, and retires the
    /// old terms in a final transaction that re-checks every row first.
    ///
    /// Safe to interrupt: each value carries its term and an old key is
    /// deleted only once nothing is sealed under it; running it again
    /// finishes. Refuses while other sessions are connected, because a
    /// running agent would keep sealing under the term being retired.
    package func rotateDEK(kek: KeyEncryptionKey) async throws -> DEKRotationReport {
        try await rotateDEK(kek: kek, batchSize: 500)
    }

    package func rotateDEK(kek: KeyEncryptionKey, batchSize: Int) async throws -> DEKRotationReport {
        try await requireNoOtherSessions(for: "rotate-dek")
        let wrapping = KeyWrapping(kek: kek, vaultID: vaultID)
        let newKey = SymmetricKey(size: .bits256)
        let newTerm: UInt32 = try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let check = try await connection.query(
                    "SELECT key_check FROM vault_meta WHERE singleton = 1 FOR UPDATE", logger: self.logger
                ).decode(Data.self).allElements()
                guard let stored = check.first, wrapping.matches(stored) else {
                    throw VaultError(.keyMismatch, "vault key does not match \(self.settings.displayName)")
                }
                let highest = try await connection.query("SELECT coalesce(max(term), 0) FROM data_keys", logger: self.logger)
                    .decode(Int64.self).allElements().first ?? 0
                let term = UInt32(highest + 1)
                let wrapped = try wrapping.wrap(newKey, term: term)
                try await connection.query(
                    "INSERT INTO data_keys (term, wrapped) VALUES (\(Int64(term)), \(wrapped))", logger: self.logger)
                try await connection.query("UPDATE vault_meta SET active_term = \(Int64(term)) WHERE singleton = 1", logger: self.logger)
                return term
            }
        }
        keyRing.withLock { $0.add(term: newTerm, key: newKey, makeActive: true) }

        var resealed = 0
        var after = ""
        while true {
            let start = after
            let (count, last) = try await storage { [self] in
                try await client.withTransaction(logger: logger) { connection in
                    try await self.resealBatch(after: start, limit: batchSize, on: connection)
                }
            }
            resealed += count
            guard let last else { break }
            after = last
        }
        let (finalCount, retired): (Int, [UInt32]) = try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT 1 FROM vault_meta WHERE singleton = 1 FOR UPDATE", logger: self.logger)
                let count = try await self.resealBatch(after: "", limit: nil, on: connection).0
                let old = try await connection.query(
                    "DELETE FROM data_keys WHERE term <> \(Int64(newTerm)) RETURNING term", logger: self.logger
                ).decode(Int64.self).allElements()
                return (count, old.map { UInt32($0) }.sorted())
            }
        }
        keyRing.withLock { $0.removeKeys(except: [newTerm]) }
        resealed += finalCount
        logger.info(
            "fleet vault data key rotated",
            metadata: ["tokend.fleet.database": "\(settings.displayName)", "tokend.vault.term": "\(newTerm)",
                       "tokend.vault.resealed": "\(resealed)"])
        return DEKRotationReport(newTerm: newTerm, resealedValues: resealed, retiredTerms: retired)
    }

    /// Re-seals, under the active term, the values of up to `limit`
    /// identities after `after` that are sealed under another term (rows
    /// locked). A value that does not open is left as it is: the identity is
    /// already corrupt, and re-sealing garbage would hide that. Returns the
    /// count changed and the last name scanned (nil at the end).
    private func resealBatch(after: String, limit: Int?, on connection: PostgresConnection) async throws -> (Int, String?) {
        let ring = keyRing.withLock { $0 }
        let rows = try await connection.query(
            """
            SELECT name, \(unescaped: FleetRow.secretColumns) FROM identities
            WHERE name > \(after) ORDER BY name LIMIT \(limit.map { Int64($0) }) FOR UPDATE
            """, logger: logger
        ).collect()
        var changed = 0
        var lastName: String?
        for row in rows {
            let row = row.makeRandomAccess()
            guard let text = try? row["name"].decode(String.self) else { continue }
            lastName = text
            guard let name = IdentityName(text) else { continue }
            for kind in SecretKind.allCases {
                guard let envelope = try? FleetRow.sealed(row, kind, name: name), KeyRing.term(of: envelope) != ring.activeTerm,
                    let secret = try? ring.open(envelope, identity: name, kind: kind)
                else { continue }
                let sealed = try ring.seal(secret, identity: name, kind: kind)
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "UPDATE identities SET \(kind.rawValue) = $1 WHERE name = $2",
                        binds: try Self.binds(sealed, text)),
                    logger: logger)
                changed += 1
            }
        }
        guard let limit, rows.count == limit else { return (changed, nil) }
        return (changed, lastName)
    }

    static func binds(_ data: Data, _ name: String) throws -> PostgresBindings {
        var binds = PostgresBindings()
        try binds.append(data)
        binds.append(name)
        return binds
    }
}
