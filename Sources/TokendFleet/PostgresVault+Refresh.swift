import Foundation
import Logging
import PostgresNIO
import TokendCore
import TokendVault

extension PostgresVault {
    package func recordIntent(_ intent: RefreshIntent) async throws {
        try await storage { [self] in
            let rows = try await client.query(
                """
                INSERT INTO refresh_intents (identity, generation, started_at)
                SELECT name, \(intent.generation), \(intent.startedAt) FROM identities WHERE name = \(intent.name.rawValue)
                ON CONFLICT (identity) DO UPDATE SET generation = excluded.generation, started_at = excluded.started_at
                RETURNING 1
                """, logger: logger
            ).collect()
            guard !rows.isEmpty else { throw VaultError(.notFound, "identity \(intent.name) does not exist") }
        }
    }

    package func recordIntents(batch: [RefreshIntent]) async throws {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                for intent in batch {
                    try await connection.query(
                        """
                        INSERT INTO refresh_intents (identity, generation, started_at)
                        SELECT name, \(intent.generation), \(intent.startedAt) FROM identities
                        WHERE name = \(intent.name.rawValue)
                        ON CONFLICT (identity) DO UPDATE SET generation = excluded.generation, started_at = excluded.started_at
                        """, logger: self.logger)
                }
            }
        }
    }

    package func clearIntent(_ name: IdentityName) async throws {
        try await storage { [self] in
            _ = try await client.query("DELETE FROM refresh_intents WHERE identity = \(name.rawValue)", logger: logger)
        }
    }

    package func pendingIntents() async throws -> [RefreshIntent] {
        try await storage { [self] in
            var intents: [RefreshIntent] = []
            for try await (identity, generation, startedAt) in try await client.query(
                "SELECT identity, generation, started_at FROM refresh_intents ORDER BY identity", logger: logger
            ).decode((String, Int64, Date).self) {
                if let name = IdentityName(identity) {
                    intents.append(RefreshIntent(name: name, generation: generation, startedAt: startedAt))
                }
            }
            return intents
        }
    }

    @discardableResult
    package func commit(_ result: RefreshCommit) async throws -> Int64 {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await self.applyOrExplain(result, on: connection)
            }
        }
    }

    package func commit(batch: [RefreshCommit]) async throws -> [Int64?] {
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                var generations: [Int64?] = []
                for result in batch { generations.append(try await self.apply(result, on: connection)) }
                return generations
            }
        }
    }

    package func updateState(_ name: IdentityName, to state: IdentityState, lastError: String?) async throws {
        try await storage { [self] in
            let rows = try await client.query(
                """
                UPDATE identities SET state = \(state.rawValue), last_error = \(lastError), updated_at = now()
                WHERE name = \(name.rawValue) RETURNING 1
                """, logger: logger
            ).collect()
            guard !rows.isEmpty else { throw VaultError(.notFound, "identity \(name) does not exist") }
        }
    }

    /// ``apply(_:on:)``, throwing `.notFound` or `.generationConflict` when
    /// nothing was stored.
    func applyOrExplain(_ result: RefreshCommit, on connection: PostgresConnection) async throws -> Int64 {
        if let generation = try await apply(result, on: connection) { return generation }
        let exists = try await connection.query(
            "SELECT 1 FROM identities WHERE name = \(result.name.rawValue)", logger: logger
        ).collect()
        guard !exists.isEmpty else { throw VaultError(.notFound, "identity \(result.name) does not exist") }
        throw VaultError(
            .generationConflict,
            "identity \(result.name) changed since its refresh began (generation "
                + "\(result.expectedGeneration)); the result was not stored")
    }

    /// Applies one refresh result inside the caller's transaction, exactly
    /// as the SQLite vault does; nil when the identity is gone or its
    /// generation moved on. The new generation is announced to the fleet.
    func apply(_ result: RefreshCommit, on connection: PostgresConnection) async throws -> Int64? {
        let ring = keyRing.withLock { $0 }
        let name = result.name
        let access = try ring.seal(result.accessToken, identity: name, kind: .accessToken)
        let refresh = try result.newRefreshToken.map { try ring.seal($0, identity: name, kind: .refreshToken) }
        let session = try result.newSessionID.map { try ring.seal($0, identity: name, kind: .sessionID) }
        let rows = try await connection.query(
            """
            UPDATE identities SET
                access_token = \(access), token_type = \(result.tokenType),
                issued_at = \(result.issuedAt), expires_at = \(result.expiresAt),
                previous_refresh_token = NULL,
                refresh_token = coalesce(\(refresh)::bytea, refresh_token),
                session_id = coalesce(\(session)::bytea, session_id),
                state = 'fresh', last_error = NULL, generation = generation + 1, updated_at = now()
            WHERE name = \(name.rawValue) AND generation = \(result.expectedGeneration)
            RETURNING generation, session_group
            """, logger: logger
        ).decode((Int64, String?).self).allElements()
        guard let (generation, group) = rows.first else { return nil }
        // A new session id is the whole group's: every member follows it,
        // each copy sealed to its own identity.
        if let newSession = result.newSessionID, let group {
            let members = try await connection.query(
                "SELECT name FROM identities WHERE session_group = \(group) AND name <> \(name.rawValue)", logger: logger
            ).decode(String.self).allElements()
            for member in members.compactMap(IdentityName.init) {
                let copy = try ring.seal(newSession, identity: member, kind: .sessionID)
                try await connection.query(
                    "UPDATE identities SET session_id = \(copy), updated_at = now() WHERE name = \(member.rawValue)",
                    logger: logger)
            }
        }
        try await connection.query("DELETE FROM refresh_intents WHERE identity = \(name.rawValue)", logger: logger)
        try await Self.announce(name, generation: generation, on: connection, logger: logger)
        return generation
    }

    /// `NOTIFY tokend_identity, '<name> <generation>'` in the caller's
    /// transaction: PostgreSQL delivers it only if the transaction commits.
    /// Identity and generation only: never a token.
    static func announce(_ name: IdentityName, generation: Int64, on connection: PostgresConnection, logger: Logger) async throws {
        let payload = FleetNotification(name: name, generation: generation).payload
        try await connection.query("SELECT pg_notify(\(FleetNotification.channel), \(payload))", logger: logger)
    }
}
