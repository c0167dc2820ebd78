import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendVault

@Suite(
    "Fleet store on PostgreSQL: the vault's behaviours, sealed exactly as in SQLite",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct PostgresVaultTests {
    @Test func everySecretRoundTripsAndTheDatabaseHoldsOnlyCiphertext() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(
            Enrollment(
                name: FleetFixture.name("billing"), provider: "p", allowRules: ["uid:1001"],
                refreshToken: Secret("RT-PLAINTEXT-MARKER-7f3a9c"), sessionID: Secret("SID-PLAINTEXT-MARKER"),
                clientSecret: Secret("CS-PLAINTEXT-MARKER"), accessToken: Secret("AT-PLAINTEXT-MARKER"),
                accessTokenExpiresAt: Date().addingTimeInterval(600)))
        let generation = try await vault.commit(
            RefreshCommit(
                name: FleetFixture.name("billing"), expectedGeneration: 1, accessToken: Secret("AT2-PLAINTEXT-MARKER"),
                issuedAt: Date(), expiresAt: Date().addingTimeInterval(600), newRefreshToken: Secret("RT2-PLAINTEXT-MARKER")))
        #expect(generation == 2)

        let loaded = try #require(try await vault.identity(named: FleetFixture.name("billing")))
        #expect(loaded.secrets.refreshToken?.exposedValue == "RT2-PLAINTEXT-MARKER")
        #expect(loaded.secrets.previousRefreshToken == nil)
        #expect(loaded.secrets.accessToken?.exposedValue == "AT2-PLAINTEXT-MARKER")
        #expect(loaded.secrets.sessionID?.exposedValue == "SID-PLAINTEXT-MARKER")
        #expect(loaded.secrets.clientSecret?.exposedValue == "CS-PLAINTEXT-MARKER")
        #expect(loaded.record.allowRules == ["uid:1001"])
        #expect(loaded.record.generation == 2)
        #expect(loaded.record.state == .fresh)

        // The operator's view: every column of every tokend table as text.
        let dump = try await fixture.sql { connection in
            var text = ""
            for table in ["identities", "data_keys", "vault_meta", "refresh_intents", "retired_generations", "leases", "tokend_migrations"] {
                for try await row in try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT t::text FROM \(table) t"), logger: FleetFixture.logger
                ).decode(String.self) {
                    text += row + "\n"
                }
            }
            return text
        }
        #expect(dump.contains("billing"))
        // bytea columns print as hex: look for the markers as text and as hex.
        let hexMarker = Data("PLAINTEXT".utf8).map { String(format: "%02x", $0) }.joined()
        for marker in ["PLAINTEXT-MARKER", "PLAINTEXT", hexMarker] {
            #expect(!dump.contains(marker), "found \(marker) in the database")
        }
        // The raw envelopes are the SQLite vault's format: version 1, term 1.
        let envelopes = try await fixture.sql { connection in
            try await connection.query(
                "SELECT refresh_token, access_token, session_id, client_secret FROM identities WHERE name = 'billing'",
                logger: FleetFixture.logger
            ).decode((Data, Data, Data, Data).self).allElements()
        }
        let row = try #require(envelopes.first)
        for envelope in [row.0, row.1, row.2, row.3] {
            #expect(envelope.first == KeyRing.envelopeVersion)
            #expect(KeyRing.term(of: envelope) == 1)
        }
    }

    @Test func aWrongKeyIsRefusedAtOpenAndChangesNothing() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        await vault.close()
        let before = try await fixture.sql { try await $0.query("SELECT t::text FROM identities t", logger: FleetFixture.logger).decode(String.self).allElements() }

        let otherKey = try KeyEncryptionKey.generate(at: fixture.directory + "/other.key")
        let error = try await #require(throws: VaultError.self) {
            try await PostgresVault.open(settings: fixture.settings(), kek: otherKey)
        }
        #expect(error.code == .keyMismatch)
        #expect(error.message.contains("vault key does not match this vault"))
        let after = try await fixture.sql { try await $0.query("SELECT t::text FROM identities t", logger: FleetFixture.logger).decode(String.self).allElements() }
        #expect(before == after)
    }

    @Test func aCiphertextMovedToAnotherIdentityMarksOnlyThatIdentityCorrupt() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(batch: ["alice", "bob", "carol"].map { FleetFixture.fullEnrollment($0) })
        try await fixture.sql { connection in
            try await connection.query(
                "UPDATE identities SET refresh_token = (SELECT refresh_token FROM identities WHERE name = 'alice') WHERE name = 'bob'",
                logger: FleetFixture.logger)
        }
        let loaded = try await vault.loadAll()
        let states = Dictionary(uniqueKeysWithValues: loaded.map { ($0.record.name.rawValue, $0.record.state) })
        #expect(states == ["alice": .fresh, "bob": .corrupt, "carol": .fresh])
        let bob = try #require(loaded.first { $0.record.name.rawValue == "bob" })
        #expect(bob.secrets.refreshToken == nil)
        #expect(bob.record.lastError?.contains("refresh_token of identity bob failed to decrypt") == true)
        // Persisted for the whole fleet: a list (no secrets) shows it too.
        let listed = try await vault.list(prefix: nil, after: nil, limit: 10)
        #expect(listed.first { $0.name.rawValue == "bob" }?.state == .corrupt)
        // A value that is not an envelope at all is corrupt too.
        try await fixture.sql { try await $0.query("UPDATE identities SET access_token = '\\x00'::bytea WHERE name = 'carol'", logger: FleetFixture.logger) }
        #expect(try await vault.identity(named: FleetFixture.name("carol"))?.record.state == .corrupt)
    }

    @Test func aLateResultIsAGenerationConflictAndStoresNothing() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        #expect(try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "one")) == 2)
        let error = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "late"))
        }
        #expect(error.code == .generationConflict)
        #expect(try await vault.identity(named: FleetFixture.name("alice"))?.secrets.refreshToken?.exposedValue == "rt-one")
        let missing = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("nobody", from: 1, token: "x"))
        }
        #expect(missing.code == .notFound)
        // A batch reports conflicts per entry and commits the rest.
        try await vault.enroll(FleetFixture.fullEnrollment("bob"))
        let results = try await vault.commit(batch: [
            FleetFixture.refresh("alice", from: 2, token: "two"), FleetFixture.refresh("bob", from: 7, token: "stale"),
        ])
        #expect(results == [3, nil])
    }

    @Test func aNameEnrolledAgainAfterRemovalContinuesItsGenerations() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "one"))
        try await vault.recordIntent(RefreshIntent(name: FleetFixture.name("alice"), generation: 2, startedAt: Date()))
        #expect(try await vault.pendingIntents().map(\.generation) == [2])
        #expect(try await vault.remove(FleetFixture.name("alice")))
        #expect(try await vault.remove(FleetFixture.name("alice")) == false)
        #expect(try await vault.pendingIntents().isEmpty)
        #expect(try await vault.enroll(FleetFixture.fullEnrollment("alice")) == 3)
        let late = try await #require(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 2, token: "late"))
        }
        #expect(late.code == .generationConflict)
    }

    @Test func policyStateIntentsAndListsWork() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(batch: ["app-a", "app-b", "svc-c", "svc-d"].map { FleetFixture.fullEnrollment($0) })
        try await vault.updatePolicy(FleetFixture.name("svc-c"), allowRules: ["group:billing"], refreshAt: 0.75)
        try await vault.updateState(FleetFixture.name("svc-d"), to: .reauthRequired, lastError: "invalid_grant")
        let listed = try await vault.list(prefix: "svc-", after: nil, limit: 10)
        #expect(listed.map(\.name.rawValue) == ["svc-c", "svc-d"])
        #expect(listed[0].allowRules == ["group:billing"] && listed[0].refreshAt == 0.75 && listed[0].generation == 1)
        #expect(listed[1].state == .reauthRequired && listed[1].lastError == "invalid_grant")
        #expect(try await vault.list(prefix: nil, after: FleetFixture.name("app-b"), limit: 2).map(\.name.rawValue) == ["svc-c", "svc-d"])
        #expect(try await vault.list(prefix: nil, after: nil, limit: 0).isEmpty)

        try await vault.recordIntents(batch: [
            RefreshIntent(name: FleetFixture.name("app-a"), generation: 1, startedAt: Date()),
            RefreshIntent(name: FleetFixture.name("ghost"), generation: 1, startedAt: Date()),
        ])
        #expect(try await vault.pendingIntents().map(\.name.rawValue) == ["app-a"])
        try await vault.clearIntent(FleetFixture.name("app-a"))
        #expect(try await vault.pendingIntents().isEmpty)
        for call in [
            { try await vault.updatePolicy(FleetFixture.name("ghost"), allowRules: [], refreshAt: nil) },
            { try await vault.updateState(FleetFixture.name("ghost"), to: .fresh, lastError: nil) },
            { try await vault.recordIntent(RefreshIntent(name: FleetFixture.name("ghost"), generation: 1, startedAt: Date())) },
        ] as [() async throws -> Void] {
            let error = try await #require(throws: VaultError.self) { try await call() }
            #expect(error.code == .notFound)
        }
    }

    @Test func appsOfOneSessionShareItAndFollowANewSessionID() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(Enrollment(name: FleetFixture.name("sso"), provider: "t", sessionID: Secret("sid-one")))
        let (generation, group) = try await vault.joinSession(
            Enrollment(name: FleetFixture.name("sso-app2"), provider: "t2"), from: FleetFixture.name("sso"))
        #expect(generation == 1 && group.count == 16)
        try await vault.commit(
            RefreshCommit(
                name: FleetFixture.name("sso"), expectedGeneration: 1, accessToken: Secret("at"), issuedAt: Date(),
                expiresAt: Date().addingTimeInterval(60), newSessionID: Secret("sid-two")))
        let app2 = try #require(try await vault.identity(named: FleetFixture.name("sso-app2")))
        #expect(app2.secrets.sessionID?.exposedValue == "sid-two")
        #expect(app2.record.sessionGroup == group && app2.record.grant == .session)
        let error = try await #require(throws: VaultError.self) {
            try await vault.joinSession(Enrollment(name: FleetFixture.name("x"), provider: "t"), from: FleetFixture.name("ghost"))
        }
        #expect(error.code == .notFound)
    }
}
