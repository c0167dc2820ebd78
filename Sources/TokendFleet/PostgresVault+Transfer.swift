import Foundation
import PostgresNIO
import TokendCore
import TokendVault

/// `tokend vault migrate`: the fleet store's side, as source and as
/// destination.
extension PostgresVault {
    /// Everything in the store with its secrets opened. Refuses while other
    /// sessions (agents) are connected, and refuses unfinished refreshes and
    /// values that do not open.
    package func exportForMigration() async throws -> VaultTransfer {
        try await requireNoOtherSessions(for: "migrating the fleet store")
        let intents = try await pendingIntents()
        let (identities, corrupt) = try await load(where: nil)
        try VaultTransfer.requireMovable(place: settings.displayName, pendingIntents: intents, corrupt: corrupt)
        let retired = try await storage { [self] in
            try await client.query("SELECT name, generation FROM retired_generations", logger: logger)
                .decode((String, Int64).self).allElements()
        }
        return VaultTransfer(identities: identities, retiredGenerations: Dictionary(retired, uniquingKeysWith: max))
    }

    /// Writes `transfer` into this store in ONE transaction, values sealed
    /// under the store's active term: either every identity arrives or none
    /// does. Refuses (changing nothing) if the store holds any identity.
    /// Each identity's generation is announced, as an enrollment is.
    package func importForMigration(_ transfer: VaultTransfer) async throws {
        let ring = keyRing.withLock { $0 }
        try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("LOCK TABLE identities IN EXCLUSIVE MODE", logger: self.logger)
                let count = try await connection.query("SELECT count(*) FROM identities", logger: self.logger)
                    .decode(Int64.self).allElements().first ?? 0
                guard count == 0 else {
                    throw VaultError(
                        .alreadyExists,
                        "\(self.settings.displayName) already holds \(count) identity(ies); nothing was changed")
                }
                for identity in transfer.identities {
                    try await self.insertMigrated(identity, ring: ring, on: connection)
                }
                for (name, generation) in transfer.retiredGenerations.sorted(by: { $0.key < $1.key }) {
                    try await connection.query(
                        """
                        INSERT INTO retired_generations (name, generation) VALUES (\(name), \(generation))
                        ON CONFLICT (name) DO UPDATE SET generation = greatest(retired_generations.generation, excluded.generation)
                        """, logger: self.logger)
                }
            }
        }
        logger.info(
            "identities migrated into the fleet store",
            metadata: ["tokend.fleet.database": "\(settings.displayName)", "tokend.fleet.count": "\(transfer.identities.count)"])
    }

    private func insertMigrated(_ identity: StoredIdentity, ring: KeyRing, on connection: PostgresConnection) async throws {
        let record = identity.record
        try FleetRow.requireProvider(record.provider)
        let rules = try FleetRow.joinRules(record.allowRules)
        let sealed = try identity.sealedValues(ring)
        let source = record.fromConfiguration ? "config" : "runtime"
        try await connection.query(
            """
            INSERT INTO identities (
                name, provider, grant_kind, allow_rules, refresh_at, state, generation,
                created_at, updated_at, issued_at, expires_at, token_type, last_error, source, session_group,
                refresh_token, previous_refresh_token, access_token, session_id, client_secret)
            VALUES (\(record.name.rawValue), \(record.provider), \(record.grant.rawValue), \(rules), \(record.refreshAt),
                \(record.state.rawValue), \(record.generation), \(record.createdAt), \(record.updatedAt), \(record.issuedAt),
                \(record.expiresAt), \(record.tokenType), \(record.lastError), \(source), \(record.sessionGroup),
                \(sealed[.refreshToken]), \(sealed[.previousRefreshToken]), \(sealed[.accessToken]), \(sealed[.sessionID]),
                \(sealed[.clientSecret]))
            """, logger: logger)
        try await Self.announce(record.name, generation: record.generation, on: connection, logger: logger)
    }
}
