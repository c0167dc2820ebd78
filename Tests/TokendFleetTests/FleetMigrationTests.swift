import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendVault

@Suite(
    "Fleet store schema: named append-only migrations, one vault per database",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetMigrationTests {
    @Test func migrationsAreRecordedByNameAndOpeningAgainAppliesNothing() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        await vault.close()
        func migrations() async throws -> [String] {
            try await fixture.sql {
                try await $0.query("SELECT name FROM tokend_migrations ORDER BY name", logger: FleetFixture.logger).decode(String.self).allElements()
            }
        }
        let first = try await migrations()
        #expect(first == ["v1-identities-secrets-keys-intents", "v2-leases"])
        // Two hosts opening at once: both succeed, the schema is migrated once.
        async let a = fixture.open()
        async let b = fixture.open()
        let (one, two) = try await (a, b)
        #expect(try await one.loadAll().first?.secrets.refreshToken?.exposedValue == "rt-refresh-alice")
        #expect(try await two.loadAll().count == 1)
        await one.close()
        await two.close()
        #expect(try await migrations() == first)
    }

    @Test func aDatabaseWithAnUnknownNewerMigrationIsRefused() async throws {
        let fixture = try FleetFixture()
        await (try await fixture.create()).close()
        try await fixture.sql {
            try await $0.query("INSERT INTO tokend_migrations (name) VALUES ('v99-from-the-future')", logger: FleetFixture.logger)
        }
        let error = try await #require(throws: VaultError.self) { try await fixture.open() }
        #expect(error.code == .incompatible)
        #expect(error.message.contains("v99-from-the-future") && error.message.contains("newer tokend"))
    }

    @Test func creatingTwiceIsRefusedAndOpeningAnEmptyDatabaseSaysSo() async throws {
        let fixture = try FleetFixture()
        let empty = try await #require(throws: VaultError.self) { try await fixture.open() }
        #expect(empty.code == .incompatible)
        #expect(empty.message.contains("holds no tokend vault"))
        await (try await fixture.create()).close()
        let again = try await #require(throws: VaultError.self) { try await fixture.create() }
        #expect(again.code == .alreadyExists)
    }

    @Test func overTCPWithAPasswordFileTheStoreWorksAndAWrongPasswordIsAClearError() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create(tcp: true)
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        await vault.close()

        let wrongFile = fixture.directory + "/wrong.password"
        _ = FileManager.default.createFile(atPath: wrongFile, contents: Data("not-the-password\n".utf8), attributes: [.posixPermissions: 0o600])
        var settings = fixture.settings(tcp: true)
        settings.password = .file(wrongFile)
        let error = try await #require(throws: VaultError.self) {
            try await PostgresVault.open(settings: settings, kek: fixture.kek())
        }
        #expect(error.code == .storage)
        #expect(error.message.contains("password authentication failed"))
        #expect(!error.message.contains("not-the-password"))
        // Nothing listening: a clear storage error naming the database, not a hang.
        var closed = fixture.settings(tcp: true)
        closed.endpoint = .tcp(host: "127.0.0.1", port: 1)
        let refused = try await #require(throws: VaultError.self) {
            try await PostgresVault.open(settings: closed, kek: fixture.kek())
        }
        #expect(refused.code == .storage)
        #expect(refused.message.contains("127.0.0.1:1"))
    }

    @Test func anOperationOnADatabaseThatWentAwayFailsInsteadOfWaitingForever() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let setup = try await fixture.create()
        try await setup.enroll(FleetFixture.fullEnrollment("alice"))
        await setup.close()
        // The short timeout only for what is meant to time out (a busy
        // machine may take longer than that to create the store).
        var settings = fixture.settings()
        settings.operationTimeout = .seconds(2)
        let vault = try await PostgresVault.open(settings: settings, kek: fixture.kek())
        defer { Task { await vault.close() } }
        _ = try await vault.loadAll()
        try await fixture.sql(inDatabase: FleetFixture.environment["TOKEND_TEST_POSTGRES_DATABASE"]!) { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE \(fixture.database) WITH (FORCE)"), logger: FleetFixture.logger)
        }
        // The pooled connection was cut; new ones are refused ("database
        // does not exist"), which the pool retries quietly: each call ends
        // with a storage error naming the database instead of waiting.
        for _ in 0..<2 {
            let error = try await #require(throws: VaultError.self) { try await vault.loadAll() }
            #expect(error.code == .storage)
            #expect(error.message.contains(fixture.database))
        }
    }
}
