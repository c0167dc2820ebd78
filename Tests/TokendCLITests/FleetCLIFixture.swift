import Foundation
import Logging
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendVault

/// A database of its own on the test cluster of scripts/postgres/start.sh,
/// with a tokend configuration that points at it, for running the real
/// `tokend vault` commands against the fleet store. A database per test:
/// rotate-dek and migrate refuse while other sessions of the user are
/// connected to theirs, and parallel suites must not count.
final class FleetCLIFixture: @unchecked Sendable {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    /// The suites are skipped (with this reason) without the cluster;
    /// FleetCLIRequirementsTests fails then under TOKEND_TEST_REQUIRE_ALL=1.
    static var available: Bool { environment["TOKEND_TEST_POSTGRES_SOCKET"] != nil }
    static let skipReason: Comment = "no test PostgreSQL cluster: eval \"$(scripts/postgres/start.sh)\" first"
    static let logger = Logger(label: "tokend.cli.fleet.tests")

    let directory: String
    let database: String
    var configPath: String { directory + "/tokend.toml" }
    var keyPath: String { directory + "/vault.key" }
    var sqlitePath: String { directory + "/state/vault.db" }
    var configArguments: [String] { ["--config", configPath] }

    private init(directory: String, database: String) {
        self.directory = directory
        self.database = database
    }

    static func make() async throws -> FleetCLIFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-fleetcli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tag = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let database = "tokend_cli_\(tag)"
        try await sql(in: environment["TOKEND_TEST_POSTGRES_DATABASE"]!) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(database)"), logger: logger)
        }
        let fixture = FleetCLIFixture(directory: directory, database: database)
        try fixture.writeConfig(backend: "postgresql")
        return fixture
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The `[vault.postgresql]` table for this database (over the Unix socket).
    var fleetTable: String {
        let env = Self.environment
        return """
            [vault.postgresql]
            socket = "\(env["TOKEND_TEST_POSTGRES_SOCKET"]!)"
            database = "\(database)"
            user = "\(env["TOKEND_TEST_POSTGRES_USER"]!)"
            password_file = "\(env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!)"
            """
    }

    func writeConfig(backend: String, path: String? = nil, keyFile: String? = nil, extra: String = "") throws {
        let text = """
            [vault]
            backend = "\(backend)"
            path = "\(path ?? sqlitePath)"
            key_file = "\(keyFile ?? keyPath)"

            \(fleetTable)

            [providers.corp]
            kind = "oauth2"
            token_endpoint = "https://idp.example.com/token"
            client_id = "tokend"
            \(extra)
            """
        try Data(text.utf8).write(to: URL(fileURLWithPath: configPath))
    }

    func kek() throws -> KeyEncryptionKey {
        if FileManager.default.fileExists(atPath: keyPath) { return try KeyEncryptionKey.load(from: .file(keyPath)) }
        return try KeyEncryptionKey.generate(at: keyPath)
    }

    var settings: FleetSettings {
        let env = Self.environment
        return FleetSettings(
            endpoint: .unixSocket(path: env["TOKEND_TEST_POSTGRES_SOCKET"]!), database: database,
            user: env["TOKEND_TEST_POSTGRES_USER"]!, password: .file(env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!),
            applicationName: "tokend-cli-test")
    }

    /// Runs `body` with the fleet store opened in this process, closed after
    /// (the commands under test refuse while other sessions are connected).
    func withStore<T: Sendable>(_ body: (PostgresVault) async throws -> T) async throws -> T {
        let vault = try await PostgresVault.open(settings: settings, kek: kek())
        do {
            let result = try await body(vault)
            await vault.close()
            return result
        } catch {
            await vault.close()
            throw error
        }
    }

    /// Raw SQL in this fixture's database: the operator's view.
    @discardableResult
    func sql<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await Self.sql(in: database, body)
    }

    static func sql<T: Sendable>(in database: String, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let env = environment
        let password = try String(contentsOfFile: env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!, encoding: .utf8)
        let configuration = PostgresConnection.Configuration(
            unixSocketPath: env["TOKEND_TEST_POSTGRES_SOCKET"]!, username: env["TOKEND_TEST_POSTGRES_USER"]!,
            password: password.trimmingCharacters(in: .whitespacesAndNewlines), database: database)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    func count(_ table: String) async throws -> Int64 {
        try await sql { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"), logger: Self.logger)
                .decode(Int64.self).allElements().first ?? -1
        }
    }

    /// One identity with every field set, as enrolled.
    static func enrollment(_ index: Int, tokenSize: Int = 0) -> Enrollment {
        let padding = String(repeating: "x", count: tokenSize)
        return Enrollment(
            name: IdentityName("id-\(index)")!, provider: "corp", grant: .refreshToken, allowRules: ["uid:\(1000 + index)", "group:ops"],
            refreshAt: 0.25 + Double(index % 5) / 10, refreshToken: Secret("rt-\(index)\(padding)"),
            sessionID: Secret("sid-\(index)"), clientSecret: Secret("cs-\(index)"), accessToken: Secret("at-\(index)\(padding)"),
            accessTokenExpiresAt: Date().addingTimeInterval(3600), tokenType: index % 2 == 0 ? "Bearer" : "DPoP",
            fromConfiguration: index % 3 == 0)
    }
}

/// Without the cluster the fleet CLI suites skip; under
/// `TOKEND_TEST_REQUIRE_ALL=1` (scripts/test.sh) that is a failure here.
@Suite("What the fleet CLI tests need")
struct FleetCLIRequirementsTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["TOKEND_TEST_REQUIRE_ALL"] == "1", "only scripts/test.sh requires everything"))
    func theTestPostgreSQLClusterIsRunning() {
        #expect(FleetCLIFixture.available, "TOKEND_TEST_POSTGRES_SOCKET is not set: start the cluster with eval \"$(scripts/postgres/start.sh)\"")
    }
}
