import Foundation
import Testing
import TokendCore
@testable import TokendConfig

@Suite("[vault] backend and [vault.postgresql]: valid tables load, hostile values are refused by key")
final class FleetStoreConfigTests {
    let directory: String
    var file: String { directory + "/tokend.toml" }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-fleetconfig-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func load(_ text: String) throws(ConfigError) -> TokendConfiguration {
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return try ConfigLoader.load(path: file, environment: [:])
    }

    func problems(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch {
            return error.problems.map { "\($0.key): \($0.message)" }
        }
    }

    /// A `[vault.postgresql]` table with `lines` added to a valid minimum.
    static func fleet(_ lines: String, base: String = "host = \"127.0.0.1\"\ndatabase = \"tokend\"\nuser = \"tokend\"") -> String {
        "[vault]\nbackend = \"postgresql\"\n[vault.postgresql]\n\(base)\n\(lines)"
    }

    @Test func sqliteIsTheDefault() throws {
        #expect(try load("").vault.backend == .sqlite)
        #expect(try load("[vault]\nbackend = \"sqlite\"").vault.backend == .sqlite)
        #expect(try load("").vault.fleetStore == nil)
    }

    /// The table beside backend = "sqlite" is what `vault migrate --to
    /// postgresql` moves into; the agent keeps using SQLite.
    @Test func theTableWithTheSqliteBackendIsKeptForMigrate() throws {
        let vault = try load("[vault]\nbackend = \"sqlite\"\n[vault.postgresql]\nhost = \"127.0.0.1\"\ndatabase = \"d\"\nuser = \"u\"").vault
        #expect(vault.backend == .sqlite)
        #expect(vault.fleetStore?.endpoint == .tcp(host: "127.0.0.1", port: 5432))
    }

    @Test func aCompleteTableLoads() throws {
        let configuration = try load("""
            [vault]
            backend = "postgresql"
            path = "/var/lib/tokend/vault.db"
            key_credential = "vault-key"

            [vault.postgresql]
            host = "db.example.com"
            port = 6432
            database = "tokend_fleet"
            user = "tokend"
            password_credential = "db-password"
            tls = "verify-full"
            ca_file = "/etc/tokend/db-ca.pem"
            schema = "tokend_a"
            lease_seconds = 7.5
            application_name = "tokend-eu-1"
            """)
        #expect(configuration.vault.keySource == .credential("vault-key"))
        #expect(configuration.vault.path == "/var/lib/tokend/vault.db")
        #expect(configuration.vault.backend == .postgresql(FleetStoreConfiguration(
            endpoint: .tcp(host: "db.example.com", port: 6432), database: "tokend_fleet", user: "tokend",
            password: .credential("db-password"), tls: .verifyFull(caFile: "/etc/tokend/db-ca.pem"), schema: "tokend_a",
            leaseSeconds: 7.5, applicationName: "tokend-eu-1")))
    }

    @Test func tlsDefaultsToNothingOnThisMachineAndVerifyFullElsewhere() throws {
        guard case .postgresql(let loopback) = try load(Self.fleet("")).vault.backend else { Issue.record("not postgresql"); return }
        #expect(loopback.tls == .disable)
        #expect(loopback.endpoint == .tcp(host: "127.0.0.1", port: 5432))
        #expect(loopback.leaseSeconds == 15)
        #expect(loopback.password == .none)
        guard case .postgresql(let socket) = try load(Self.fleet(
            "", base: "socket = \"/run/postgresql/.s.PGSQL.5432\"\ndatabase = \"d\"\nuser = \"u\"\npassword_file = \"/etc/p\"")).vault.backend
        else { Issue.record("not postgresql"); return }
        #expect(socket.tls == .disable)
        #expect(socket.endpoint == .unixSocket(path: "/run/postgresql/.s.PGSQL.5432"))
        #expect(socket.password == .file("/etc/p"))
        guard case .postgresql(let remote) = try load(Self.fleet(
            "ca_file = \"/etc/ca.pem\"", base: "host = \"db.example.com\"\ndatabase = \"d\"\nuser = \"u\"")).vault.backend
        else { Issue.record("not postgresql"); return }
        #expect(remote.tls == .verifyFull(caFile: "/etc/ca.pem"))
        #expect(problems(Self.fleet("", base: "host = \"db.example.com\"\ndatabase = \"d\"\nuser = \"u\"")) == [
            "vault.postgresql.ca_file: is required: tls defaults to \"verify-full\" for a database that is not on this machine",
        ])
        guard case .postgresql(let plain) = try load(Self.fleet(
            "tls = \"disable\"", base: "host = \"db.example.com\"\ndatabase = \"d\"\nuser = \"u\"")).vault.backend
        else { Issue.record("not postgresql"); return }
        #expect(plain.tls == .disable)
    }

    @Test(arguments: [
        // The backend switch.
        ("[vault]\nbackend = \"postgresql\"", ["vault.backend: \"postgresql\" needs a [vault.postgresql] table (host or socket, database, user)"]),
        // With backend = "sqlite" the table is still checked (vault migrate reads it).
        ("[vault]\nbackend = \"sqlite\"\n[vault.postgresql]\nhost = \"127.0.0.1\"\nport = 0", ["vault.postgresql.port: must be between 1 and 65535, not 0", "vault.postgresql.database: is required", "vault.postgresql.user: is required"]),
        ("[vault]\nbackend = \"mysql\"", ["vault.backend: must be one of \"sqlite\", \"postgresql\", not \"mysql\""]),
        ("[vault]\nbackend = \"\"", ["vault.backend: must be one of \"sqlite\", \"postgresql\", not \"\""]),
        ("[vault]\nbackend = \"post\\u0007gres\"", ["vault.backend: must be one of \"sqlite\", \"postgresql\", not \"post?gres\""]),
        ("[vault]\nbackend = 1", ["vault.backend: must be a string, not an integer"]),
        ("[vault]\nbackend = \"postgresql\"\npostgresql = \"host=x\"", ["vault.postgresql: must be a table ([vault.postgresql]), not a string"]),
        ("[vault]\npath = \"\"", ["vault.path: must not be empty"]),
        ("[vault]\npath = \"/a\\nb\"", ["vault.path: must not contain control characters"]),
        // No secrets inline.
        (fleet("password = \"hunter2\""), ["vault.postgresql.password: secrets do not belong in the config file; use password_file or password_credential"]),
        // Where the database is.
        (fleet("", base: "database = \"d\"\nuser = \"u\""), ["vault.postgresql.host: is required (or socket = \"/run/postgresql/.s.PGSQL.5432\")"]),
        (fleet("socket = \"/run/postgresql/.s.PGSQL.5432\""), ["vault.postgresql.socket: give either host or socket, not both"]),
        (fleet("", base: "host = \"\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.host: must be 1-253 printable ASCII characters without spaces"]),
        (fleet("", base: "host = \"db host\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.host: must be 1-253 printable ASCII characters without spaces"]),
        (fleet("", base: "host = \"db\\u0001x\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.host: must be 1-253 printable ASCII characters without spaces"]),
        (fleet("", base: "host = \"\(String(repeating: "a", count: 254))\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.host: must be 1-253 printable ASCII characters without spaces"]),
        (fleet("", base: "host = 5432\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.host: must be a string, not an integer"]),
        (fleet("port = 0"), ["vault.postgresql.port: must be between 1 and 65535, not 0"]),
        (fleet("port = -5432"), ["vault.postgresql.port: must be between 1 and 65535, not -5432"]),
        (fleet("port = 9223372036854775807"), ["vault.postgresql.port: must be between 1 and 65535, not 9223372036854775807"]),
        (fleet("port = \"5432\""), ["vault.postgresql.port: must be an integer, not a string"]),
        (fleet("port = 5432.5"), ["vault.postgresql.port: must be an integer, not a floating-point number"]),
        (fleet("", base: "socket = \"\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.socket: must not be empty"]),
        (fleet("", base: "socket = \"/run/\\u001b[2J\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.socket: must not contain control characters"]),
        (fleet("", base: "socket = \"/\(String(repeating: "s", count: 120))\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.socket: is longer than a Unix socket path may be (107 bytes)"]),
        (fleet("", base: "socket = \"/s/.s.PGSQL.5432\"\nport = 5432\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.port: is not used with socket (the socket file name holds the port)"]),
        (fleet("tls = \"require\"", base: "socket = \"/s/.s.PGSQL.5432\"\ndatabase = \"d\"\nuser = \"u\""), ["vault.postgresql.tls: TLS is not used over a Unix socket; leave tls out or set it to \"disable\""]),
        // Database, user, schema, application name.
        (fleet("", base: "host = \"127.0.0.1\"\nuser = \"u\""), ["vault.postgresql.database: is required"]),
        (fleet("", base: "host = \"127.0.0.1\"\ndatabase = \"\"\nuser = \"u\""), ["vault.postgresql.database: must not be empty"]),
        (fleet("", base: "host = \"127.0.0.1\"\ndatabase = \"d\""), ["vault.postgresql.user: is required"]),
        (fleet("", base: "host = \"127.0.0.1\"\ndatabase = \"d\"\nuser = \"a\\tb\""), ["vault.postgresql.user: must be 1-63 printable ASCII characters without spaces"]),
        (fleet("", base: "host = \"127.0.0.1\"\ndatabase = \"\(String(repeating: "d", count: 64))\"\nuser = \"u\""), ["vault.postgresql.database: must be 1-63 printable ASCII characters without spaces"]),
        (fleet("", base: "host = \"127.0.0.1\"\ndatabase = [\"d\"]\nuser = \"u\""), ["vault.postgresql.database: must be a string, not an array"]),
        (fleet("schema = \"Public\""), ["vault.postgresql.schema: must match [a-z_][a-z0-9_]{0,62}, not \"Public\""]),
        (fleet("schema = \"\""), ["vault.postgresql.schema: must match [a-z_][a-z0-9_]{0,62}, not \"\""]),
        (fleet("schema = \"a;drop table x\""), ["vault.postgresql.schema: must match [a-z_][a-z0-9_]{0,62}, not \"a;drop table x\""]),
        (fleet("schema = true"), ["vault.postgresql.schema: must be a string, not a boolean"]),
        (fleet("application_name = \"\""), ["vault.postgresql.application_name: must be 1-63 printable ASCII characters without spaces"]),
        (fleet("application_name = \"tokend\\nx\""), ["vault.postgresql.application_name: must be 1-63 printable ASCII characters without spaces"]),
        // The password source.
        (fleet("password_file = \"/a\"\npassword_credential = \"b\""), ["vault.postgresql.password_credential: give either password_file or password_credential, not both"]),
        (fleet("password_file = \"\""), ["vault.postgresql.password_file: must not be empty"]),
        (fleet("password_file = \"/p\\u0001w\""), ["vault.postgresql.password_file: must not contain control characters"]),
        (fleet("password_file = 1"), ["vault.postgresql.password_file: must be a string, not an integer"]),
        (fleet("password_credential = \"../db\""), ["vault.postgresql.password_credential: must be a plain file name (printable, no '/')"]),
        (fleet("password_credential = \"\""), ["vault.postgresql.password_credential: must be a plain file name (printable, no '/')"]),
        (fleet("password_credential = \"db\\u0001\""), ["vault.postgresql.password_credential: must be a plain file name (printable, no '/')"]),
        // TLS.
        (fleet("tls = \"prefer\""), ["vault.postgresql.tls: must be one of \"disable\", \"require\", \"verify-full\", not \"prefer\""]),
        (fleet("tls = \"\""), ["vault.postgresql.tls: must be one of \"disable\", \"require\", \"verify-full\", not \"\""]),
        (fleet("tls = true"), ["vault.postgresql.tls: must be a string, not a boolean"]),
        (fleet("tls = \"verify-full\""), ["vault.postgresql.ca_file: is required with tls = \"verify-full\""]),
        (fleet("tls = \"require\"\nca_file = \"/ca.pem\""), ["vault.postgresql.ca_file: is only used with tls = \"verify-full\""]),
        (fleet("tls = \"disable\"\nca_file = \"/ca.pem\""), ["vault.postgresql.ca_file: is only used with tls = \"verify-full\""]),
        (fleet("ca_file = \"\""), ["vault.postgresql.ca_file: must not be empty"]),
        // The lease.
        (fleet("lease_seconds = 0"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not 0.0"]),
        (fleet("lease_seconds = -15"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not -15.0"]),
        (fleet("lease_seconds = 3601"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not 3601.0"]),
        (fleet("lease_seconds = nan"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not nan"]),
        (fleet("lease_seconds = inf"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not inf"]),
        (fleet("lease_seconds = -inf"), ["vault.postgresql.lease_seconds: must be between 1.0 and 3600.0 seconds, not -inf"]),
        (fleet("lease_seconds = \"15\""), ["vault.postgresql.lease_seconds: must be a number of seconds, not a string"]),
        // Typos.
        (fleet("hots = \"x\""), ["vault.postgresql.hots: unknown key"]),
        (fleet("sslmode = \"require\""), ["vault.postgresql.sslmode: unknown key"]),
    ])
    func hostileValuesAreReportedByKey(text: String, expected: [String]) {
        #expect(problems(text) == expected)
    }

    @Test func everyProblemOfTheTableIsReportedAtOnce() {
        let found = problems(Self.fleet("port = 0\nlease_seconds = 0\ntls = \"x\"\nuser2 = 1"))
        #expect(found.count == 4)
    }
}
