import Logging
import PostgresNIO
import TokendCore

/// The fleet store's schema, as named, append-only migrations recorded in
/// `tokend_migrations`.
///
/// Never edit a registered migration: add a new one. A database that
/// records a migration this build does not know was written by a newer
/// tokend and is refused rather than guessed at. Each step is a list of
/// single statements (the extended query protocol runs one at a time).
enum FleetMigrations {
    struct Migration: Sendable {
        let name: String
        let statements: [PostgresQuery]
    }

    /// Serializes hosts that start at the same moment against a fresh
    /// database: the second waits, then finds the work done.
    static let advisoryLock: Int64 = 0x746F_6B65_6E64_0001  // "tokend" + 1

    static let all: [Migration] = [
        Migration(name: "v1-identities-secrets-keys-intents", statements: [
            // The data keys, each wrapped by the KEK-derived wrapping key.
            """
            CREATE TABLE data_keys (
                term        bigint      PRIMARY KEY CHECK (term BETWEEN 1 AND 4294967295),
                wrapped     bytea       NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT now()
            )
            """,
            // One row: the vault's random id (the HKDF salt), the key check
            // and the term new values are sealed under.
            """
            CREATE TABLE vault_meta (
                singleton      integer     PRIMARY KEY CHECK (singleton = 1),
                vault_id       bytea       NOT NULL CHECK (length(vault_id) = 16),
                key_check      bytea       NOT NULL CHECK (length(key_check) = 32),
                active_term    bigint      NOT NULL REFERENCES data_keys(term),
                created_at     timestamptz NOT NULL DEFAULT now(),
                kek_rotated_at timestamptz
            )
            """,
            // Names sort in byte order (COLLATE "C"), as IdentityName and
            // the SQLite vault do, so LIST pagination is the same on both.
            """
            CREATE TABLE identities (
                name          text COLLATE "C" PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 128),
                provider      text        NOT NULL CHECK (octet_length(provider) BETWEEN 1 AND 256),
                grant_kind    text        NOT NULL
                              CHECK (grant_kind IN ('refresh_token', 'client_credentials', 'session')),
                allow_rules   text        NOT NULL DEFAULT '',
                refresh_at    double precision CHECK (refresh_at IS NULL OR (refresh_at > 0 AND refresh_at < 1)),
                state         text        NOT NULL
                              CHECK (state IN ('pending', 'fresh', 'refreshing', 'stale', 'expired',
                                               'reauth_required', 'corrupt')),
                generation    bigint      NOT NULL CHECK (generation >= 1),
                created_at    timestamptz NOT NULL,
                updated_at    timestamptz NOT NULL,
                issued_at     timestamptz,
                expires_at    timestamptz,
                token_type    text,
                last_error    text,
                source        text        NOT NULL DEFAULT 'runtime' CHECK (source IN ('runtime', 'config')),
                session_group text,
                refresh_token          bytea,
                previous_refresh_token bytea,
                access_token           bytea,
                session_id             bytea,
                client_secret          bytea
            )
            """,
            "CREATE INDEX identities_session_group ON identities (session_group) WHERE session_group IS NOT NULL",
            // A refresh about to reach the provider; removed by its commit.
            """
            CREATE TABLE refresh_intents (
                identity    text COLLATE "C" PRIMARY KEY REFERENCES identities (name) ON DELETE CASCADE,
                generation  bigint      NOT NULL,
                started_at  timestamptz NOT NULL
            )
            """,
            // The last generation of each removed name, so a re-enrolled
            // name continues from there and a late result cannot land on it.
            """
            CREATE TABLE retired_generations (
                name        text COLLATE "C" PRIMARY KEY,
                generation  bigint NOT NULL
            )
            """,
        ]),
        Migration(name: "v2-leases", statements: [
            // One refresher per identity across the fleet. Times come from
            // the database clock only; every grant takes the next fence, so
            // a holder that lost the lease cannot commit with its old fence.
            """
            CREATE TABLE leases (
                name         text COLLATE "C" PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 128),
                holder       text        NOT NULL CHECK (octet_length(holder) BETWEEN 1 AND 128),
                fence        bigint      NOT NULL CHECK (fence >= 1),
                acquired_at  timestamptz NOT NULL,
                expires_at   timestamptz NOT NULL
            )
            """,
        ]),
    ]

    /// Applies what is missing, in one transaction under the advisory lock.
    ///
    /// - Returns: the names of the migrations applied now.
    /// - Throws: `.incompatible` if the database records a migration this
    ///   build does not know.
    static func migrate(
        _ connection: PostgresConnection, schema: String?, migrations: [Migration] = all, place: String, logger: Logger
    ) async throws -> [String] {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(advisoryLock))", logger: logger)
            if let schema {
                // Validated by FleetSettings: [a-z_][a-z0-9_]*, safe to splice.
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: logger)
            }
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS tokend_migrations (
                    name        text COLLATE "C" PRIMARY KEY,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied = Set<String>()
            for try await name in try await connection.query("SELECT name FROM tokend_migrations", logger: logger).decode(String.self) {
                applied.insert(name)
            }
            let known = Set(migrations.map(\.name))
            if let unknown = applied.subtracting(known).sorted().first {
                throw VaultError(
                    .incompatible,
                    "\(place) was written by a newer tokend (migration \(unknown) is unknown to this build); upgrade tokend")
            }
            var done: [String] = []
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.statements {
                    try await connection.query(statement, logger: logger)
                }
                try await connection.query("INSERT INTO tokend_migrations (name) VALUES (\(migration.name))", logger: logger)
                done.append(migration.name)
            }
            return done
        }
    }
}
