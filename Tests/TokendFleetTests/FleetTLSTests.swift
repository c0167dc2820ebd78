import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet

@Suite(
    "Fleet store over TLS: verify-full checks the server against the CA file, require encrypts",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetTLSTests {
    /// How many of the fixture's connections the server sees encrypted.
    static func encryptedConnections(_ fixture: FleetFixture) async throws -> Int64 {
        try await fixture.sql { connection in
            try await connection.query(
                """
                SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                WHERE a.application_name = \(fixture.applicationName) AND s.ssl
                """, logger: FleetFixture.logger
            ).decode(Int64.self).allElements().first ?? 0
        }
    }

    @Test func verifyFullWithTheServersCAWorksAndIsEncrypted() async throws {
        let fixture = try FleetFixture()
        var settings = fixture.settings(tcp: true)
        settings.tls = .verifyFull(caFile: FleetFixture.environment["TOKEND_TEST_POSTGRES_CA_FILE"]!)
        let vault = try await PostgresVault.create(settings: settings, kek: fixture.kek())
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        #expect(try await vault.loadAll().first?.secrets.accessToken?.exposedValue == "at-alice")
        // The pool keeps its idle connection: the server reports it as TLS.
        #expect(try await Self.encryptedConnections(fixture) >= 1)
    }

    @Test func verifyFullWithAnotherCAIsRefusedBeforeAnyLogin() async throws {
        let fixture = try FleetFixture()
        var settings = fixture.settings(tcp: true)
        settings.tls = .verifyFull(caFile: FleetFixture.environment["TOKEND_TEST_POSTGRES_OTHER_CA_FILE"]!)
        let error = try await #require(throws: VaultError.self) {
            try await PostgresVault.create(settings: settings, kek: fixture.kek())
        }
        #expect(error.code == .storage)
        #expect(error.message.contains("127.0.0.1"))
        // Nothing was created: the refused connection never logged in.
        let tables = try await fixture.sql { connection in
            try await connection.query(
                "SELECT count(*) FROM pg_tables WHERE schemaname = \(fixture.schema)", logger: FleetFixture.logger
            ).decode(Int64.self).allElements()
        }
        #expect(tables == [0])
    }

    @Test func requireEncryptsWithoutCheckingAndAMissingCAFileIsAClearError() async throws {
        let fixture = try FleetFixture()
        var settings = fixture.settings(tcp: true)
        settings.tls = .require
        let vault = try await PostgresVault.create(settings: settings, kek: fixture.kek())
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        #expect(try await Self.encryptedConnections(fixture) >= 1)

        settings.tls = .verifyFull(caFile: fixture.directory + "/no-such-ca.pem")
        let error = try await #require(throws: VaultError.self) {
            try await PostgresVault.open(settings: settings, kek: fixture.kek())
        }
        #expect(error.code == .missingFile)
        #expect(error.message.contains("no-such-ca.pem"))
    }
}
