import TOMLKit
import TokendCore

/// The `[vault]` section and its `[vault.postgresql]` table.
///
/// ```toml
/// [vault]
/// backend = "postgresql"                   # default "sqlite"
/// key_file = "/etc/tokend/vault.key"
///
/// [vault.postgresql]
/// host = "db.example.com"                  # or socket = "/run/postgresql/.s.PGSQL.5432"
/// port = 5432
/// database = "tokend"
/// user = "tokend"
/// password_file = "/etc/tokend/db.password" # or password_credential = "db-password"
/// tls = "verify-full"                      # "require", "disable"
/// ca_file = "/etc/tokend/db-ca.pem"
/// lease_seconds = 15
/// held_results = "/var/lib/tokend/fleet-held"  # default: beside [vault] path
/// ```
enum VaultSection {
    static func parse(_ reader: TableReader) -> VaultConfiguration {
        var vault = VaultConfiguration()
        if let path = reader.string("path", required: false) {
            if let problem = pathProblem(path) { reader.problem("path", problem) } else { vault.path = path }
        }
        let keyFile = reader.string("key_file")
        let credential = reader.string("key_credential")
        switch (keyFile, credential) {
        case (let file?, nil): vault.keySource = .file(file)
        case (nil, let name?): vault.keySource = .credential(name)
        case (_?, _?): reader.problem("key_credential", "give either key_file or key_credential, not both")
        case (nil, nil): break
        }
        let backend = reader.string("backend")
        let table = reader.table("postgresql")
        // The table is read (and checked) whatever the backend: with
        // backend = "sqlite" the agent ignores it, and `tokend vault migrate`
        // uses it to move the vault into the fleet store and back.
        if let table {
            vault.fleetStore = parseFleetStore(TableReader(table, path: reader.keyPath("postgresql"), report: reader.report))
        }
        switch backend {
        case nil, "sqlite"?:
            break
        case "postgresql"?:
            if let store = vault.fleetStore {
                vault.backend = .postgresql(store)
            } else if reader.table["postgresql"] == nil {
                reader.problem("backend", "\"postgresql\" needs a [vault.postgresql] table (host or socket, database, user)")
            }
        case let other?:
            reader.problem("backend", "must be one of \"sqlite\", \"postgresql\", not \"\(printable(other))\"")
        }
        reader.rejectUnknownKeys()
        return vault
    }

    static func parseFleetStore(_ reader: TableReader) -> FleetStoreConfiguration? {
        let before = reader.report.problems.count
        defer { reader.rejectUnknownKeys() }
        if reader.table["password"] != nil {
            _ = reader.string("password")
            reader.problem("password", "secrets do not belong in the config file; use password_file or password_credential")
        }
        let host = plain(reader, "host", max: 253)
        let port = reader.int("port", range: 1...65535)
        let socket = reader.string("socket")
        let database = plain(reader, "database", max: 63, required: true)
        let user = plain(reader, "user", max: 63, required: true)
        let passwordFile = reader.string("password_file")
        let passwordCredential = reader.string("password_credential")
        let tlsText = reader.string("tls")
        let caFile = reader.string("ca_file")
        let schema = reader.string("schema")
        let lease = reader.seconds("lease_seconds", range: FleetStoreConfiguration.leaseSecondsRange)
        let applicationName = plain(reader, "application_name", max: 63)
        let heldResults = reader.string("held_results")
        if let heldResults, let problem = pathProblem(heldResults) { reader.problem("held_results", problem) }

        var endpoint: FleetStoreConfiguration.Endpoint?
        switch (host, socket) {
        case (let host?, nil):
            endpoint = .tcp(host: host, port: port ?? FleetStoreConfiguration.defaultPort)
        case (nil, let path?):
            if let problem = pathProblem(path) {
                reader.problem("socket", problem)
            } else if path.utf8.count > 107 {
                reader.problem("socket", "is longer than a Unix socket path may be (107 bytes)")
            } else {
                endpoint = .unixSocket(path: path)
            }
            if port != nil { reader.problem("port", "is not used with socket (the socket file name holds the port)") }
        case (_?, _?):
            reader.problem("socket", "give either host or socket, not both")
        case (nil, nil):
            if reader.table["host"] == nil { reader.problem("host", "is required (or socket = \"/run/postgresql/.s.PGSQL.5432\")") }
        }

        var password = FleetStoreConfiguration.PasswordSource.none
        switch (passwordFile, passwordCredential) {
        case (let file?, nil):
            if let problem = pathProblem(file) { reader.problem("password_file", problem) } else { password = .file(file) }
        case (nil, let name?):
            if name.isEmpty || name.contains("/") || name == "." || name == ".." || !isPlain(name) || name.utf8.count > 255 {
                reader.problem("password_credential", "must be a plain file name (printable, no '/')")
            } else {
                password = .credential(name)
            }
        case (_?, _?): reader.problem("password_credential", "give either password_file or password_credential, not both")
        case (nil, nil): break
        }

        if let caFile, let problem = pathProblem(caFile) { reader.problem("ca_file", problem) }
        let tls = parseTLS(reader, tlsText, caFile: caFile, endpoint: endpoint)

        if let schema, !isSchemaName(schema) {
            reader.problem("schema", "must match [a-z_][a-z0-9_]{0,62}, not \"\(printable(schema))\"")
        }
        guard reader.report.problems.count == before, let endpoint, let database, let user, let tls else { return nil }
        return FleetStoreConfiguration(
            endpoint: endpoint, database: database, user: user, password: password, tls: tls, schema: schema,
            leaseSeconds: lease ?? FleetStoreConfiguration.defaultLeaseSeconds, applicationName: applicationName,
            heldResultsDirectory: heldResults)
    }

    /// TLS defaults to what is safe for where the database is: nothing over
    /// a Unix socket or loopback (the bytes never leave the machine), and
    /// `verify-full` for any other host, so a plain connection across a
    /// network is something an operator must ask for in writing.
    private static func parseTLS(
        _ reader: TableReader, _ text: String?, caFile: String?, endpoint: FleetStoreConfiguration.Endpoint?
    ) -> FleetStoreConfiguration.TLS? {
        let local: Bool
        switch endpoint {
        case .unixSocket?: local = true
        case .tcp(let host, _)?: local = FleetStoreConfiguration.isLoopback(host)
        case nil: return nil
        }
        let socket: Bool = if case .unixSocket? = endpoint { true } else { false }
        let mode = text ?? (caFile != nil ? "verify-full" : local ? "disable" : "verify-full")
        switch mode {
        case "disable":
            if caFile != nil { reader.problem("ca_file", "is only used with tls = \"verify-full\"") }
            return .disable
        case "require", "verify-full":
            if socket {
                reader.problem("tls", "TLS is not used over a Unix socket; leave tls out or set it to \"disable\"")
                return nil
            }
            if mode == "require" {
                if caFile != nil { reader.problem("ca_file", "is only used with tls = \"verify-full\"") }
                return .require
            }
            guard let caFile else {
                reader.problem(
                    "ca_file",
                    text == nil
                        ? "is required: tls defaults to \"verify-full\" for a database that is not on this machine"
                        : "is required with tls = \"verify-full\"")
                return nil
            }
            return .verifyFull(caFile: caFile)
        default:
            reader.problem("tls", "must be one of \"disable\", \"require\", \"verify-full\", not \"\(printable(mode))\"")
            return nil
        }
    }

    /// A string key that must be printable ASCII without spaces (host
    /// names, database and user names): nothing that could split a log
    /// line or a startup packet field.
    private static func plain(_ reader: TableReader, _ key: String, max: Int, required: Bool = false) -> String? {
        guard let text = reader.string(key, required: required) else { return nil }
        guard !text.isEmpty, text.utf8.count <= max, isPlain(text) else {
            reader.problem(key, "must be 1-\(max) printable ASCII characters without spaces")
            return nil
        }
        return text
    }

    static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "must not be empty" }
        if path.utf8.count > 4096 { return "is longer than a path may be (4096 bytes)" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "must not contain control characters" }
        return nil
    }

    static func isPlain(_ text: String) -> Bool { text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } }

    static func isSchemaName(_ text: String) -> Bool {
        guard let first = text.utf8.first, text.utf8.count <= 63 else { return false }
        let lower = UInt8(ascii: "a")...UInt8(ascii: "z"), digit = UInt8(ascii: "0")...UInt8(ascii: "9")
        guard lower.contains(first) || first == UInt8(ascii: "_") else { return false }
        return text.utf8.allSatisfy { lower.contains($0) || digit.contains($0) || $0 == UInt8(ascii: "_") }
    }

    /// A value quoted in a message, with control characters escaped so it
    /// cannot forge a line of its own.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(64).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
    }
}
