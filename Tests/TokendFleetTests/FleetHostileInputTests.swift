import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendVault

/// Every input of the fleet store with a broken value: settings, password
/// files, lease holders and ttls, provider names, allow rules, raw rows.
@Suite("Fleet store: hostile inputs are refused with a clear message")
struct FleetHostileInputTests {
    static func settings(_ endpoint: FleetSettings.Endpoint = .tcp(host: "127.0.0.1", port: 5432)) -> FleetSettings {
        FleetSettings(endpoint: endpoint, database: "tokend", user: "tokend")
    }

    static let brokenSettings = ["empty host", "host with a space", "host with a newline", "huge host", "port 0", "port 65536", "relative socket", "huge socket path", "tls over a socket", "empty database", "database with NUL", "huge user", "schema with a quote", "schema with upper case", "empty schema", "relative CA file", "empty application name", "zero connect timeout"]

    /// Valid settings with one field broken as `what` says.
    static func broken(_ what: String) -> FleetSettings {
        var s = settings()
        switch what {
        case "empty host": s.endpoint = .tcp(host: "", port: 5432)
        case "host with a space": s.endpoint = .tcp(host: "db host", port: 5432)
        case "host with a newline": s.endpoint = .tcp(host: "db\nhost", port: 5432)
        case "huge host": s.endpoint = .tcp(host: String(repeating: "h", count: 300), port: 5432)
        case "port 0": s.endpoint = .tcp(host: "db", port: 0)
        case "port 65536": s.endpoint = .tcp(host: "db", port: 65536)
        case "relative socket": s.endpoint = .unixSocket(path: "run/.s.PGSQL.5432")
        case "huge socket path": s.endpoint = .unixSocket(path: "/" + String(repeating: "s", count: 120))
        case "tls over a socket": s.endpoint = .unixSocket(path: "/run/pg/.s.PGSQL.5432"); s.tls = .require
        case "empty database": s.database = ""
        case "database with NUL": s.database = "db\u{0}x"
        case "huge user": s.user = String(repeating: "u", count: 64)
        case "schema with a quote": s.schema = "x\"; DROP TABLE identities; --"
        case "schema with upper case": s.schema = "Tokend"
        case "empty schema": s.schema = ""
        case "relative CA file": s.tls = .verifyFull(caFile: "ca.pem")
        case "empty application name": s.applicationName = ""
        case "zero connect timeout": s.connectTimeout = .zero
        default: Issue.record("no such case \(what)")
        }
        return s
    }

    @Test(arguments: brokenSettings)
    func brokenSettingsAreRefused(what: String) {
        let settings = Self.broken(what)
        #expect(throws: VaultError.self, "\(what)") { try settings.validate() }
        #expect(throws: Never.self) { try Self.settings().validate() }
    }

    @Test func passwordFilesThatAreMissingOpenEmptyOrHugeAreRefusedWithoutQuotingThem() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-fleet-pw-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(String, Data?, Int, VaultError.Code)] = [
            ("missing", nil, 0o600, .missingFile),
            ("open", Data("hunter2-secret\n".utf8), 0o644, .insecurePermissions),
            ("empty", Data(), 0o600, .malformedKey),
            ("two-lines", Data("hunter2-secret\nmore\n".utf8), 0o600, .malformedKey),
            ("huge", Data(repeating: 0x61, count: 5000), 0o600, .malformedKey),
            ("binary", Data([0xFF, 0xFE, 0x00]), 0o600, .malformedKey),
        ]
        for (name, contents, mode, code) in cases {
            let path = "\(directory)/\(name)"
            if let contents {
                _ = FileManager.default.createFile(atPath: path, contents: contents, attributes: [.posixPermissions: mode])
            }
            var settings = Self.settings()
            settings.password = .file(path)
            let error = try await #require(throws: VaultError.self, "\(name)") {
                try await PostgresVault.open(settings: settings, kek: KeyEncryptionKey.generate(at: "\(directory)/\(name).key"))
            }
            #expect(error.code == code, "\(name): \(error.message)")
            #expect(!error.message.contains("hunter2"))
        }
    }

    @Test(arguments: [
        "", " ", "alice", "alice ", " 1", "alice 1 2", "alice  1", "alice\t1", "alice 1\n", "alice -1", "alice 0",
        "alice +1", "alice 1.0", "alice 99999999999999999999", "-alice 1", "al ice 1", "al\u{0}ice 1", "ålice 1",
        String(repeating: "a", count: 129) + " 1", String(repeating: "x", count: 7900),
    ])
    func malformedNotificationPayloadsDoNotParse(payload: String) {
        #expect(FleetNotification(payload: payload) == nil)
    }

    @Test func wellFormedPayloadsRoundTrip() {
        let max = FleetNotification(name: IdentityName(String(repeating: "a", count: 128))!, generation: .max)
        #expect(FleetNotification(payload: max.payload) == max)
        #expect(FleetNotification(payload: "user:42@transmit 7") == FleetNotification(name: IdentityName("user:42@transmit")!, generation: 7))
    }
}

@Suite(
    "Fleet store: hostile values reaching the database",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetHostileDatabaseTests {
    @Test func badHoldersTtlsProvidersAndRulesAreRefusedBeforeTheDatabase() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let name = FleetFixture.name("alice")
        for holder in ["", String(repeating: "h", count: 129), "host\na", "host\u{0}", "hôst"] {
            await #expect(throws: VaultError.self) { try await vault.acquireLease(name: name, holder: holder, ttl: .seconds(5)) }
        }
        for ttl: Duration in [.zero, .milliseconds(-5), .milliseconds(99), .seconds(3601)] {
            await #expect(throws: VaultError.self) { try await vault.acquireLease(name: name, holder: "h", ttl: ttl) }
        }
        for provider in ["", String(repeating: "p", count: 257), "p\u{1B}[31m"] {
            await #expect(throws: VaultError.self) {
                try await vault.enroll(Enrollment(name: name, provider: provider, refreshToken: Secret("rt")))
            }
        }
        for rules in [[""], ["uid:1,uid:2"], ["uid:1\n"]] {
            await #expect(throws: VaultError.self) {
                try await vault.enroll(Enrollment(name: name, provider: "p", allowRules: rules, refreshToken: Secret("rt")))
            }
        }
        for refreshAt in [0.0, 1.0, -1, .nan] {
            await #expect(throws: VaultError.self) {
                try await vault.enroll(Enrollment(name: name, provider: "p", refreshAt: refreshAt, refreshToken: Secret("rt")))
            }
        }
        #expect(try await vault.loadAll().isEmpty)
        #expect(try await vault.currentLease(of: name) == nil)
    }

    @Test func rowsWrittenByHandWithBadValuesAreRefusedOrSkipped() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        // The schema refuses names the protocol could not carry.
        for bad in ["", String(repeating: "n", count: 129)] {
            await #expect(throws: (any Error).self) {
                try await fixture.sql { connection in
                    try await connection.query(
                        """
                        INSERT INTO identities (name, provider, grant_kind, state, generation, created_at, updated_at)
                        VALUES (\(bad), 'p', 'refresh_token', 'pending', 1, now(), now())
                        """, logger: FleetFixture.logger)
                }
            }
        }
        // A name the schema allows but the grammar does not is skipped; a
        // state this build does not know marks only that identity corrupt.
        try await fixture.sql { connection in
            try await connection.query(
                """
                INSERT INTO identities (name, provider, grant_kind, state, generation, created_at, updated_at)
                VALUES ('bad name', 'p', 'refresh_token', 'pending', 1, now(), now())
                """, logger: FleetFixture.logger)
            try await connection.query("ALTER TABLE identities DROP CONSTRAINT identities_state_check", logger: FleetFixture.logger)
            try await connection.query("UPDATE identities SET state = 'haunted' WHERE name = 'alice'", logger: FleetFixture.logger)
        }
        let loaded = try await vault.loadAll()
        #expect(loaded.map(\.record.name.rawValue) == ["alice"])
        #expect(loaded.first?.record.state == .corrupt)
        #expect(try await vault.list(prefix: nil, after: nil, limit: 10).map(\.name.rawValue) == ["alice"])
    }
}
