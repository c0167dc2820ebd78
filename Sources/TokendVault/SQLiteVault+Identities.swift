import Foundation
import GRDB
import TokendCore

extension SQLiteVault {
    package func list(prefix: String?, after: IdentityName?, limit: Int) async throws -> [IdentityRecord] {
        try await storage {
            try await pool.read { db in
                let rows = try Row.fetchCursor(
                    db,
                    sql: """
                        SELECT \(IdentityRow.metadataColumns) FROM identities
                        WHERE (?1 IS NULL OR substr(name, 1, length(?1)) = ?1)
                          AND (?2 IS NULL OR name > ?2)
                        ORDER BY name LIMIT ?3
                        """,
                    arguments: [prefix, after?.rawValue, max(0, limit)])
                var records: [IdentityRecord] = []
                while let row = try rows.next() {
                    guard let name = IdentityName(row["name"]) else { continue }
                    if let record = try? IdentityRow.record(from: row, name: name) {
                        records.append(record)
                    }
                }
                return records
            }
        }
    }

    package func declaredRecords(including names: [IdentityName]) async throws -> [IdentityRecord] {
        // The names go in as one JSON array: any number of them, one argument.
        let json = String(decoding: try JSONEncoder().encode(names.map(\.rawValue)), as: UTF8.self)
        return try await storage {
            try await pool.read { db in
                let rows = try Row.fetchCursor(
                    db,
                    sql: """
                        SELECT \(IdentityRow.metadataColumns) FROM identities
                        WHERE source = 'config' OR name IN (SELECT value FROM json_each(?))
                        ORDER BY name
                        """,
                    arguments: [json])
                var records: [IdentityRecord] = []
                while let row = try rows.next() {
                    guard let name = (row[0] as String?).flatMap(IdentityName.init) else { continue }
                    if let record = try? IdentityRow.record(from: row, name: name) { records.append(record) }
                }
                return records
            }
        }
    }

    @discardableResult
    package func enroll(_ enrollment: Enrollment) async throws -> Int64 {
        try requireWriter()
        return try await storage {
            try await pool.write { db in try self.upsert(enrollment, in: db, now: Date()) }
        }
    }

    package func enroll(batch: [Enrollment]) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                let now = Date()
                for enrollment in batch { _ = try self.upsert(enrollment, in: db, now: now) }
            }
        }
    }

    package func updatePolicy(_ name: IdentityName, allowRules: [String], refreshAt: Double?) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: "UPDATE identities SET allow_rules = ?, refresh_at = ?, updated_at = ? WHERE name = ?",
                    arguments: [try IdentityRow.joinRules(allowRules), refreshAt, Date().timeIntervalSince1970, name.rawValue])
                guard db.changesCount > 0 else { throw VaultError(.notFound, "identity \(name) does not exist") }
            }
        }
    }

    @discardableResult
    package func remove(_ name: IdentityName) async throws -> Bool {
        try requireWriter()
        return try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO retired_generations (name, generation)
                        SELECT name, generation FROM identities WHERE name = ?
                        ON CONFLICT (name) DO UPDATE SET generation = max(generation, excluded.generation)
                        """,
                    arguments: [name.rawValue])
                try db.execute(sql: "DELETE FROM identities WHERE name = ?", arguments: [name.rawValue])
                return db.changesCount > 0
            }
        }
    }

    package func joinSession(_ enrollment: Enrollment, from source: IdentityName) async throws -> (generation: Int64, group: String) {
        try requireWriter()
        let ring = keyRing.withLock { $0 }
        return try await storage {
            try await pool.write { db in
                guard
                    let row = try Row.fetchOne(
                        db, sql: "SELECT session_id, session_group FROM identities WHERE name = ?",
                        arguments: [source.rawValue])
                else { throw VaultError(.notFound, "identity \(source) does not exist") }
                guard let sealed = row["session_id"] as Data? else {
                    throw VaultError(.notFound, "identity \(source) has no session to share")
                }
                let session = try ring.open(sealed, identity: source, kind: .sessionID)
                let group = (row["session_group"] as String?) ?? Self.newSessionGroup()
                try db.execute(
                    sql: "UPDATE identities SET session_group = ?, updated_at = ? WHERE name = ?",
                    arguments: [group, Date().timeIntervalSince1970, source.rawValue])
                var joined = enrollment
                joined.sessionID = session
                joined.sessionGroup = group
                joined.grant = .session
                return (try self.upsert(joined, in: db, now: Date()), group)
            }
        }
    }

    /// A random reference for a session group (8 bytes, hex): it says
    /// which identities share a session without saying anything about it.
    static func newSessionGroup() -> String {
        (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// Inserts or replaces one identity. Re-enrolling keeps `created_at`,
    /// bumps the generation, replaces every secret, and drops any refresh
    /// intent (it referred to secrets that no longer exist).
    private func upsert(_ enrollment: Enrollment, in db: Database, now: Date) throws -> Int64 {
        let ring = keyRing.withLock { $0 }
        let name = enrollment.name
        func sealed(_ secret: Secret?, _ kind: SecretKind) throws -> Data? {
            try secret.map { try ring.seal($0, identity: name, kind: kind) }
        }
        let hasUsableAccessToken =
            enrollment.accessToken != nil && (enrollment.accessTokenExpiresAt.map { $0 > now } ?? false)
        let state: IdentityState = hasUsableAccessToken ? .fresh : .pending
        let timestamp = now.timeIntervalSince1970
        let generation = try Int64.fetchOne(
            db,
            sql: """
                INSERT INTO identities (
                    name, provider, grant_kind, allow_rules, refresh_at, state, generation,
                    created_at, updated_at, issued_at, expires_at, token_type, last_error,
                    refresh_token, previous_refresh_token, access_token, session_id, client_secret, source,
                    session_group)
                VALUES (?, ?, ?, ?, ?, ?,
                    1 + coalesce((SELECT generation FROM retired_generations WHERE name = ?1), 0),
                    ?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, ?, ?)
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
                """,
            arguments: [
                name.rawValue, enrollment.provider, enrollment.grant.rawValue,
                try IdentityRow.joinRules(enrollment.allowRules), enrollment.refreshAt, state.rawValue,
                timestamp, timestamp, hasUsableAccessToken ? timestamp : nil,
                hasUsableAccessToken ? enrollment.accessTokenExpiresAt?.timeIntervalSince1970 : nil,
                hasUsableAccessToken ? (enrollment.tokenType ?? "Bearer") : nil,
                try sealed(enrollment.refreshToken, .refreshToken),
                try sealed(hasUsableAccessToken ? enrollment.accessToken : nil, .accessToken),
                try sealed(enrollment.sessionID, .sessionID),
                try sealed(enrollment.clientSecret, .clientSecret),
                enrollment.fromConfiguration ? "config" : "runtime",
                enrollment.sessionGroup,
            ])!
        try db.execute(sql: "DELETE FROM refresh_intents WHERE identity = ?", arguments: [name.rawValue])
        return generation
    }
}
