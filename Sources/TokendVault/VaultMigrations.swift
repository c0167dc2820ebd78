import GRDB

/// The vault schema, as named, append-only migrations.
///
/// Never edit a registered migration: add a new one. A vault written by a
/// newer tokend (with migrations this build does not know) is refused rather
/// than guessed at.
enum VaultMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-identities-secrets-keys-intents") { db in
            // The data keys, each wrapped by the KEK-derived wrapping key.
            try db.execute(sql: """
                CREATE TABLE data_keys (
                    term        INTEGER PRIMARY KEY CHECK (term >= 1),
                    wrapped     BLOB    NOT NULL,
                    created_at  REAL    NOT NULL
                );
                """)
            // Exactly one row: the vault's random id (the HKDF salt), the
            // key-check value and the term new values are sealed under.
            try db.execute(sql: """
                CREATE TABLE vault_meta (
                    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
                    vault_id       BLOB    NOT NULL CHECK (length(vault_id) = 16),
                    key_check      BLOB    NOT NULL CHECK (length(key_check) = 32),
                    active_term    INTEGER NOT NULL REFERENCES data_keys(term),
                    created_at     REAL    NOT NULL,
                    kek_rotated_at REAL
                );
                """)
            // One row per identity. Secret columns hold sealed envelopes
            // (see KeyRing); everything else is plain metadata.
            try db.execute(sql: """
                CREATE TABLE identities (
                    name         TEXT    PRIMARY KEY NOT NULL
                                 CHECK (length(name) BETWEEN 1 AND 128),
                    provider     TEXT    NOT NULL CHECK (provider <> ''),
                    grant_kind   TEXT    NOT NULL
                                 CHECK (grant_kind IN ('refresh_token', 'client_credentials', 'session')),
                    allow_rules  TEXT    NOT NULL DEFAULT '',
                    refresh_at   REAL    CHECK (refresh_at IS NULL OR (refresh_at > 0 AND refresh_at < 1)),
                    state        TEXT    NOT NULL
                                 CHECK (state IN ('pending', 'fresh', 'refreshing', 'stale', 'expired',
                                                  'reauth_required', 'corrupt')),
                    generation   INTEGER NOT NULL CHECK (generation >= 1),
                    created_at   REAL    NOT NULL,
                    updated_at   REAL    NOT NULL,
                    issued_at    REAL,
                    expires_at   REAL,
                    token_type   TEXT,
                    last_error   TEXT,
                    refresh_token          BLOB,
                    previous_refresh_token BLOB,
                    access_token           BLOB,
                    session_id             BLOB,
                    client_secret          BLOB
                );
                """)
            // A refresh about to reach the provider; removed by its commit.
            // One left behind means the agent died mid-refresh.
            try db.execute(sql: """
                CREATE TABLE refresh_intents (
                    identity    TEXT    PRIMARY KEY NOT NULL
                                REFERENCES identities(name) ON DELETE CASCADE,
                    generation  INTEGER NOT NULL,
                    started_at  REAL    NOT NULL
                );
                """)
        }
        migrator.registerMigration("v2-identity-source") { db in
            // Identities declared in the configuration file are kept in step
            // with it (added, updated, removed on reload); those enrolled at
            // run time are left alone.
            try db.execute(sql: """
                ALTER TABLE identities ADD COLUMN source TEXT NOT NULL DEFAULT 'runtime'
                    CHECK (source IN ('runtime', 'config'));
                """)
        }
        migrator.registerMigration("v3-retired-generations") { db in
            // The last generation of each removed name: enrolling the name
            // again continues from there, so a refresh that started before
            // the removal can never commit onto the new identity's secrets.
            try db.execute(sql: """
                CREATE TABLE retired_generations (
                    name        TEXT    PRIMARY KEY NOT NULL,
                    generation  INTEGER NOT NULL
                );
                """)
            // The previous refresh token was kept but never used: a secret
            // with no purpose is only a liability. Drop the copies.
            try db.execute(sql: "UPDATE identities SET previous_refresh_token = NULL")
        }
        migrator.registerMigration("v4-session-groups") { db in
            // SSO across apps: identities of several apps (providers) that
            // use one Transmit backend session. Each holds the session id
            // sealed to itself (so a ciphertext still cannot be moved, and
            // verify and rotate-dek apply as to any value); the group keeps
            // the copies in step, in one transaction, and gives them one fate.
            try db.execute(sql: """
                ALTER TABLE identities ADD COLUMN session_group TEXT;
                CREATE INDEX identities_session_group ON identities(session_group) WHERE session_group IS NOT NULL;
                """)
        }
        return migrator
    }
}
