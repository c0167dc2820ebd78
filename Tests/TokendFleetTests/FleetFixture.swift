import Foundation
import Logging
import PostgresNIO
import TokendCore
import TokendFleet
import TokendVault

/// The PostgreSQL cluster of scripts/postgres/start.sh, as its `export`
/// lines describe it. Each fixture works in a schema of its own, so suites
/// run in parallel without seeing each other's rows or leases.
final class FleetFixture: @unchecked Sendable {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    /// True when the test cluster runs (the suites are skipped otherwise,
    /// and FleetRequirementsTests fails under TOKEND_TEST_REQUIRE_ALL=1).
    static var available: Bool { environment["TOKEND_TEST_POSTGRES_URL"] != nil }

    let directory: String
    let keyPath: String
    let schema: String
    let applicationName: String
    private(set) var database: String

    init() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tokend-fleet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        keyPath = directory + "/fleet.key"
        let tag = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        schema = "t_\(tag)"
        applicationName = "tokend-test-\(tag)"
        database = Self.environment["TOKEND_TEST_POSTGRES_DATABASE"] ?? ""
    }

    /// A fixture with a database of its own: notifications are per
    /// database, so a listener there hears only this test's commits.
    static func withOwnDatabase() async throws -> FleetFixture {
        let fixture = try FleetFixture()
        let name = "tokend_\(fixture.schema)"
        try await fixture.sql { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Self.logger)
        }
        fixture.database = name
        return fixture
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Settings for the test role: over the Unix socket by default, with
    /// the password read from the cluster's 0600 file.
    func settings(tcp: Bool = false) -> FleetSettings {
        let env = Self.environment
        let endpoint: FleetSettings.Endpoint =
            tcp
            ? .tcp(host: env["TOKEND_TEST_POSTGRES_HOST"]!, port: Int(env["TOKEND_TEST_POSTGRES_PORT"]!)!)
            : .unixSocket(path: env["TOKEND_TEST_POSTGRES_SOCKET"]!)
        return FleetSettings(
            endpoint: endpoint, database: database, user: env["TOKEND_TEST_POSTGRES_USER"]!,
            password: .file(env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!), schema: schema,
            applicationName: applicationName)
    }

    func kek() throws -> KeyEncryptionKey {
        if FileManager.default.fileExists(atPath: keyPath) { return try KeyEncryptionKey.load(from: .file(keyPath)) }
        return try KeyEncryptionKey.generate(at: keyPath)
    }

    func create(tcp: Bool = false) async throws -> PostgresVault {
        try await PostgresVault.create(settings: settings(tcp: tcp), kek: kek())
    }

    func open() async throws -> PostgresVault {
        try await PostgresVault.open(settings: settings(), kek: kek())
    }

    /// Raw SQL in the fixture's schema, bypassing tokend: the operator's
    /// (or an attacker's) view of the database.
    @discardableResult
    func sql<T: Sendable>(
        inDatabase other: String? = nil, _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let env = Self.environment
        let password = try String(contentsOfFile: env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!, encoding: .utf8)
        var configuration = PostgresConnection.Configuration(
            unixSocketPath: env["TOKEND_TEST_POSTGRES_SOCKET"]!, username: env["TOKEND_TEST_POSTGRES_USER"]!,
            password: password.trimmingCharacters(in: .whitespacesAndNewlines),
            database: other ?? database)
        configuration.options.additionalStartupParameters = [("search_path", schema)]
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: Self.logger)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    static let logger = Logger(label: "tokend.fleet.tests")

    static func name(_ text: String) -> IdentityName { IdentityName(text)! }

    static func fullEnrollment(_ name: String, token: String = "rt") -> Enrollment {
        Enrollment(
            name: Self.name(name), provider: "transmit-eu", grant: .refreshToken, allowRules: ["uid:1001", "group:ops"],
            refreshAt: 0.5, refreshToken: Secret("\(token)-refresh-\(name)"), sessionID: Secret("sid-\(name)"),
            clientSecret: Secret("cs-\(name)"), accessToken: Secret("at-\(name)"),
            accessTokenExpiresAt: Date().addingTimeInterval(3600), tokenType: "Bearer")
    }

    static func refresh(_ name: String, from generation: Int64, token: String) -> RefreshCommit {
        RefreshCommit(
            name: Self.name(name), expectedGeneration: generation, accessToken: Secret("at-\(token)"),
            issuedAt: Date(), expiresAt: Date().addingTimeInterval(600), newRefreshToken: Secret("rt-\(token)"))
    }
}

/// Collects a listener's events from a task of its own, so a test can
/// await one without owning the iterator.
actor EventCollector {
    private(set) var events: [FleetEvent] = []
    private var task: Task<Void, Never>?

    init(_ listener: FleetListener) {
        task = nil
        Task { await self.start(listener) }
    }

    private func start(_ listener: FleetListener) {
        task = Task {
            for await event in listener { self.append(event) }
        }
    }

    private func append(_ event: FleetEvent) { events.append(event) }

    func stop() { task?.cancel() }

    /// Polls until `count(events) >= n` for the events `predicate` keeps;
    /// gives up after `limit` (a hang guard, not a timing assertion).
    func waitFor(_ n: Int = 1, limit: Duration = .seconds(60), _ predicate: @Sendable (FleetEvent) -> Bool) async -> [FleetEvent] {
        let deadline = ContinuousClock.now + limit
        while events.filter(predicate).count < n, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return events.filter(predicate)
    }
}
