import Foundation
import PostgresNIO
import TokendCore
import TokendVault

extension PostgresVault {
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

    package func list(prefix: String?, after: IdentityName?, limit: Int) async throws -> [IdentityRecord] {
        let query: PostgresQuery = """
            SELECT \(unescaped: FleetRow.metadataColumns) FROM identities
            WHERE (\(prefix)::text IS NULL OR starts_with(name, \(prefix)::text))
              AND (\(after?.rawValue)::text IS NULL OR name > \(after?.rawValue)::text)
            ORDER BY name LIMIT \(Int64(max(0, limit)))
            """
        return try await storage { [self] in
            try await client.withConnection { connection in
                var records: [IdentityRecord] = []
                for try await row in try await connection.query(query, logger: self.logger) {
                    let row = row.makeRandomAccess()
                    guard let text = try? row["name"].decode(String.self), let name = IdentityName(text) else { continue }
                    if let record = try? FleetRow.record(from: row, name: name) { records.append(record) }
                }
                return records
            }
        }
    }

    @discardableResult
    package func enroll(_ enrollment: Enrollment) async throws -> Int64 {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await self.upsert(enrollment, on: connection)
            }
        }
    }

    package func enroll(batch: [Enrollment]) async throws {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                for enrollment in batch { _ = try await self.upsert(enrollment, on: connection) }
            }
        }
    }

    package func updatePolicy(_ name: IdentityName, allowRules: [String], refreshAt: Double?) async throws {
        let rules = try FleetRow.joinRules(allowRules)
        if let refreshAt, !(refreshAt > 0 && refreshAt < 1) {
            throw VaultError(.storage, "refresh_at must be between 0 and 1 (exclusive)")
        }
        try await storage { [self] in
            let rows = try await client.query(
                """
                UPDATE identities SET allow_rules = \(rules), refresh_at = \(refreshAt), updated_at = now()
                WHERE name = \(name.rawValue) RETURNING 1
                """, logger: logger
            ).collect()
            guard !rows.isEmpty else { throw VaultError(.notFound, "identity \(name) does not exist") }
        }
    }

    @discardableResult
    package func remove(_ name: IdentityName) async throws -> Bool {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query(
                    """
                    INSERT INTO retired_generations (name, generation)
                    SELECT name, generation FROM identities WHERE name = \(name.rawValue)
                    ON CONFLICT (name) DO UPDATE SET
                        generation = greatest(retired_generations.generation, excluded.generation)
                    """, logger: self.logger)
                let removed = try await connection.query(
                    "DELETE FROM identities WHERE name = \(name.rawValue) RETURNING generation", logger: self.logger
                ).decode(Int64.self).allElements()
                guard let retired = removed.first else { return false }
                // One past the last generation, so every agent still serving
                // it looks, finds it gone, and forgets it.
                try await Self.announce(name, generation: retired + 1, on: connection, logger: self.logger)
                return true
            }
        }
    }

    package func joinSession(_ enrollment: Enrollment, from source: IdentityName) async throws -> (generation: Int64, group: String) {
        let ring = keyRing.withLock { $0 }
        return try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let rows = try await connection.query(
                    "SELECT session_id, session_group FROM identities WHERE name = \(source.rawValue) FOR UPDATE",
                    logger: self.logger
                ).collect()
                guard let row = rows.first?.makeRandomAccess() else {
                    throw VaultError(.notFound, "identity \(source) does not exist")
                }
                guard let sealed = try FleetRow.sealed(row, .sessionID, name: source) else {
                    throw VaultError(.notFound, "identity \(source) has no session to share")
                }
                let session = try ring.open(sealed, identity: source, kind: .sessionID)
                let group = (try? row["session_group"].decode(String?.self)) ?? Self.newSessionGroup()
                try await connection.query(
                    "UPDATE identities SET session_group = \(group), updated_at = now() WHERE name = \(source.rawValue)",
                    logger: self.logger)
                var joined = enrollment
                joined.sessionID = session
                joined.sessionGroup = group
                joined.grant = .session
                return (try await self.upsert(joined, on: connection), group)
            }
        }
    }

    /// A random reference for a session group (8 bytes, hex): it says which
    /// identities share a session without saying anything about it.
    static func newSessionGroup() -> String {
        (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// Inserts or replaces one identity inside the caller's transaction, as
    /// the SQLite vault does: re-enrolling keeps `created_at`, bumps the
    /// generation, replaces every secret and drops any refresh intent. The
    /// new generation is announced to the fleet.
    private func upsert(_ enrollment: Enrollment, on connection: PostgresConnection) async throws -> Int64 {
        let ring = keyRing.withLock { $0 }
        let name = enrollment.name
        try FleetRow.requireProvider(enrollment.provider)
        let rules = try FleetRow.joinRules(enrollment.allowRules)
        if let refreshAt = enrollment.refreshAt, !(refreshAt > 0 && refreshAt < 1) {
            throw VaultError(.storage, "refresh_at must be between 0 and 1 (exclusive)")
        }
        func sealed(_ secret: Secret?, _ kind: SecretKind) throws -> Data? {
            try secret.map { try ring.seal($0, identity: name, kind: kind) }
        }
        let now = Date()
        let usable = enrollment.accessToken != nil && (enrollment.accessTokenExpiresAt.map { $0 > now } ?? false)
        let state: IdentityState = usable ? .fresh : .pending
        let issuedAt: Date? = usable ? now : nil
        let expiresAt: Date? = usable ? enrollment.accessTokenExpiresAt : nil
        let tokenType: String? = usable ? (enrollment.tokenType ?? "Bearer") : nil
        let refresh = try sealed(enrollment.refreshToken, .refreshToken)
        let access = try sealed(usable ? enrollment.accessToken : nil, .accessToken)
        let session = try sealed(enrollment.sessionID, .sessionID)
        let clientSecret = try sealed(enrollment.clientSecret, .clientSecret)
        let source = enrollment.fromConfiguration ? "config" : "runtime"
        let rows = try await connection.query(
            """
            INSERT INTO identities (
                name, provider, grant_kind, allow_rules, refresh_at, state, generation,
                created_at, updated_at, issued_at, expires_at, token_type, last_error,
                refresh_token, previous_refresh_token, access_token, session_id, client_secret, source, session_group)
            VALUES (\(name.rawValue), \(enrollment.provider), \(enrollment.grant.rawValue), \(rules),
                \(enrollment.refreshAt), \(state.rawValue),
                1 + coalesce((SELECT generation FROM retired_generations WHERE name = \(name.rawValue)), 0),
                now(), now(), \(issuedAt), \(expiresAt), \(tokenType), NULL,
                \(refresh), NULL, \(access), \(session), \(clientSecret), \(source), \(enrollment.sessionGroup))
            ON CONFLICT (name) DO UPDATE SET
                provider = excluded.provider, grant_kind = excluded.grant_kind,
                allow_rules = excluded.allow_rules, refresh_at = excluded.refresh_at,
                state = excluded.state, generation = identities.generation + 1,
                updated_at = excluded.updated_at, issued_at = excluded.issued_at,
                expires_at = excluded.expires_at, token_type = excluded.token_type,
                last_error = NULL, refresh_token = excluded.refresh_token,
                previous_refresh_token = NULL, access_token = excluded.access_token,
                session_id = excluded.session_id, client_secret = excluded.client_secret,
                source = excluded.source, session_group = excluded.session_group
            RETURNING generation
            """, logger: logger
        ).decode(Int64.self).allElements()
        guard let generation = rows.first else {
            throw VaultError(.storage, "\(settings.displayName): enrolling \(name) returned no generation")
        }
        try await connection.query("DELETE FROM refresh_intents WHERE identity = \(name.rawValue)", logger: logger)
        try await Self.announce(name, generation: generation, on: connection, logger: logger)
        return generation
    }

    /// Reads identities and opens their secrets; those whose values do not
    /// open come back `corrupt` (without secrets) and are listed separately.
    func load(where name: IdentityName?) async throws -> ([StoredIdentity], [(IdentityName, String)]) {
        let ring = keyRing.withLock { $0 }
        let query: PostgresQuery = """
            SELECT \(unescaped: FleetRow.metadataColumns), \(unescaped: FleetRow.secretColumns)
            FROM identities WHERE \(name?.rawValue)::text IS NULL OR name = \(name?.rawValue)::text ORDER BY name
            """
        return try await storage { [self] in
            try await client.withConnection { connection in
                var identities: [StoredIdentity] = []
                var corrupt: [(IdentityName, String)] = []
                for try await row in try await connection.query(query, logger: self.logger) {
                    let row = row.makeRandomAccess()
                    guard let text = try? row["name"].decode(String.self), let name = IdentityName(text) else {
                        self.logger.error("fleet vault row with an invalid identity name skipped")
                        continue
                    }
                    do {
                        let record = try FleetRow.record(from: row, name: name)
                        var secrets = IdentitySecrets()
                        for kind in SecretKind.allCases {
                            if let envelope = try FleetRow.sealed(row, kind, name: name) {
                                secrets[kind] = try ring.open(envelope, identity: name, kind: kind)
                            }
                        }
                        identities.append(StoredIdentity(record: record, secrets: secrets))
                    } catch let error as VaultError {
                        corrupt.append((name, error.message))
                        identities.append(Self.corruptIdentity(row: row, name: name, reason: error.message))
                    }
                }
                return (identities, corrupt)
            }
        }
    }

    private static func corruptIdentity(row: PostgresRandomAccessRow, name: IdentityName, reason: String) -> StoredIdentity {
        let now = Date()
        var record =
            (try? FleetRow.record(from: row, name: name))
            ?? IdentityRecord(
                name: name, provider: (try? row["provider"].decode(String.self)) ?? "", grant: .refreshToken,
                createdAt: now, updatedAt: now)
        record.state = .corrupt
        record.lastError = reason
        return StoredIdentity(record: record, secrets: IdentitySecrets())
    }

    /// Records `corrupt` for identities newly found corrupt, so every agent
    /// of the fleet shows it.
    private func persistCorrupt(_ corrupt: [(IdentityName, String)]) async throws {
        guard !corrupt.isEmpty else { return }
        for (name, reason) in corrupt {
            logger.error(
                "identity marked corrupt: its row does not read back (a sealed value or a field); re-enroll it to replace it",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(reason)"])
        }
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                for (name, reason) in corrupt {
                    try await connection.query(
                        """
                        UPDATE identities SET state = 'corrupt', last_error = \(reason), updated_at = now()
                        WHERE name = \(name.rawValue) AND (state <> 'corrupt' OR last_error IS DISTINCT FROM \(reason))
                        """, logger: self.logger)
                }
            }
        }
    }
}
