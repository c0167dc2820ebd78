import Foundation
import GRDB
import TokendCore

extension SQLiteVault {
    package func recordIntent(_ intent: RefreshIntent) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                guard try Self.exists(intent.name, in: db) else {
                    throw VaultError(.notFound, "identity \(intent.name) does not exist")
                }
                try db.execute(
                    sql: "INSERT OR REPLACE INTO refresh_intents (identity, generation, started_at) VALUES (?, ?, ?)",
                    arguments: [intent.name.rawValue, intent.generation, intent.startedAt.timeIntervalSince1970])
            }
        }
    }

    package func recordIntents(batch: [RefreshIntent]) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                for intent in batch {
                    try db.execute(
                        sql: """
                            INSERT OR REPLACE INTO refresh_intents (identity, generation, started_at)
                            SELECT name, ?, ? FROM identities WHERE name = ?
                            """,
                        arguments: [intent.generation, intent.startedAt.timeIntervalSince1970, intent.name.rawValue])
                }
            }
        }
    }

    package func clearIntent(_ name: IdentityName) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM refresh_intents WHERE identity = ?", arguments: [name.rawValue])
            }
        }
    }

    package func pendingIntents() async throws -> [RefreshIntent] {
        try await storage {
            try await pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT identity, generation, started_at FROM refresh_intents ORDER BY identity"
                ).compactMap { row in
                    IdentityName(row["identity"]).map {
                        RefreshIntent(
                            name: $0, generation: row["generation"],
                            startedAt: Date(timeIntervalSince1970: row["started_at"]))
                    }
                }
            }
        }
    }

    @discardableResult
    package func commit(_ result: RefreshCommit) async throws -> Int64 {
        try requireWriter()
        return try await storage {
            try await pool.write { db in
                guard let generation = try self.apply(result, in: db, now: Date()) else {
                    guard try Self.exists(result.name, in: db) else {
                        throw VaultError(.notFound, "identity \(result.name) does not exist")
                    }
                    throw VaultError(
                        .generationConflict,
                        "identity \(result.name) changed since its refresh began (generation "
                            + "\(result.expectedGeneration)); the result was not stored")
                }
                return generation
            }
        }
    }

    package func commit(batch: [RefreshCommit]) async throws -> [Int64?] {
        try requireWriter()
        return try await storage {
            try await pool.write { db in
                let now = Date()
                return try batch.map { try self.apply($0, in: db, now: now) }
            }
        }
    }

    package func updateState(_ name: IdentityName, to state: IdentityState, lastError: String?) async throws {
        try requireWriter()
        try await storage {
            try await pool.write { db in
                try db.execute(
                    sql: "UPDATE identities SET state = ?, last_error = ?, updated_at = ? WHERE name = ?",
                    arguments: [state.rawValue, lastError, Date().timeIntervalSince1970, name.rawValue])
                guard db.changesCount > 0 else {
                    throw VaultError(.notFound, "identity \(name) does not exist")
                }
            }
        }
    }

    /// Applies one refresh result inside the caller's transaction; nil when
    /// the identity is gone or its generation moved on.
    ///
    /// A rotated refresh token replaces the one used, which is dead from
    /// now on and is not kept (nothing could use it without tripping the
    /// provider's reuse detection).
    private func apply(_ result: RefreshCommit, in db: Database, now: Date) throws -> Int64? {
        let ring = keyRing.withLock { $0 }
        let name = result.name
        let sealedRefresh = try result.newRefreshToken.map { try ring.seal($0, identity: name, kind: .refreshToken) }
        let sealedSession = try result.newSessionID.map { try ring.seal($0, identity: name, kind: .sessionID) }
        try db.execute(
            sql: """
                UPDATE identities SET
                    access_token = ?, token_type = ?, issued_at = ?, expires_at = ?,
                    previous_refresh_token = NULL,
                    refresh_token = coalesce(?, refresh_token),
                    session_id = coalesce(?, session_id),
                    state = 'fresh', last_error = NULL, generation = generation + 1, updated_at = ?
                WHERE name = ? AND generation = ?
                """,
            arguments: [
                try ring.seal(result.accessToken, identity: name, kind: .accessToken), result.tokenType,
                result.issuedAt.timeIntervalSince1970, result.expiresAt.timeIntervalSince1970,
                sealedRefresh, sealedSession, now.timeIntervalSince1970,
                name.rawValue, result.expectedGeneration,
            ])
        // No row at that generation: removed, or re-enrolled meanwhile.
        guard db.changesCount > 0 else { return nil }
        // A new session id is the whole group's: every member follows it,
        // each copy sealed to its own identity.
        if let session = result.newSessionID,
            let group = try String.fetchOne(db, sql: "SELECT session_group FROM identities WHERE name = ?", arguments: [name.rawValue])
        {
            let members = try String.fetchAll(
                db, sql: "SELECT name FROM identities WHERE session_group = ? AND name <> ?", arguments: [group, name.rawValue])
            for member in members.compactMap(IdentityName.init) {
                try db.execute(
                    sql: "UPDATE identities SET session_id = ?, updated_at = ? WHERE name = ?",
                    arguments: [try ring.seal(session, identity: member, kind: .sessionID), now.timeIntervalSince1970, member.rawValue])
            }
        }
        try db.execute(sql: "DELETE FROM refresh_intents WHERE identity = ?", arguments: [name.rawValue])
        return result.expectedGeneration + 1
    }

    static func exists(_ name: IdentityName, in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM identities WHERE name = ?)", arguments: [name.rawValue])
            ?? false
    }
}
