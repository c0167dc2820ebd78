/// Which store holds the vault: the host's SQLite file (the default) or the
/// fleet's PostgreSQL database (`[vault] backend = "postgresql"`).
package enum VaultBackend: Sendable, Hashable {
    case sqlite
    case postgresql(FleetStoreConfiguration)

    package var name: String {
        switch self {
        case .sqlite: "sqlite"
        case .postgresql: "postgresql"
        }
    }
}

/// The `[vault.postgresql]` table, validated. TokendConfig does not link the
/// database driver: `TokendFleet` turns this into its connection settings
/// (`FleetSettings(_:)`), resolving the credential then.
package struct FleetStoreConfiguration: Sendable, Hashable {
    package static let defaultPort = 5432
    package static let defaultLeaseSeconds: Double = 15
    package static let leaseSecondsRange: ClosedRange<Double> = 1...3600

    package enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        /// The path of the server's socket file (`.../.s.PGSQL.5432`).
        case unixSocket(path: String)
    }

    /// Where the database password comes from: never the configuration
    /// file itself.
    package enum PasswordSource: Sendable, Hashable {
        case none
        /// A private file (mode 0600 or 0400) holding one line.
        case file(String)
        /// A systemd credential, `$CREDENTIALS_DIRECTORY/<name>`, resolved
        /// like the vault key's `key_credential`.
        case credential(String)
    }

    package enum TLS: Sendable, Hashable {
        case disable
        /// Encrypted; the certificate is not checked.
        case require
        /// Encrypted; the certificate must chain to this CA and name the host.
        case verifyFull(caFile: String)
    }

    package var endpoint: Endpoint
    package var database: String
    package var user: String
    package var password: PasswordSource
    package var tls: TLS
    package var schema: String?
    /// How long a refresher's lease on one identity lasts without renewal:
    /// the bound on how long a dead or cut-off host blocks its identities.
    package var leaseSeconds: Double
    /// Shown in `pg_stat_activity`; nil for `tokend@<hostname>`.
    package var applicationName: String?
    /// This host's private directory for refresh results the store could
    /// not take yet (sealed); nil for `fleet-held` beside `[vault] path`.
    package var heldResultsDirectory: String?

    package init(
        endpoint: Endpoint, database: String, user: String, password: PasswordSource = .none, tls: TLS = .disable,
        schema: String? = nil, leaseSeconds: Double = defaultLeaseSeconds, applicationName: String? = nil,
        heldResultsDirectory: String? = nil
    ) {
        self.heldResultsDirectory = heldResultsDirectory
        self.endpoint = endpoint
        self.database = database
        self.user = user
        self.password = password
        self.tls = tls
        self.schema = schema
        self.leaseSeconds = leaseSeconds
        self.applicationName = applicationName
    }

    /// The lease time as the engine takes it.
    package var leaseDuration: Duration { .milliseconds(Int64((leaseSeconds * 1000).rounded())) }

    /// What messages call the store (never a password).
    package var displayName: String {
        switch endpoint {
        case .tcp(let host, let port): "postgresql database \(database) at \(host):\(port)"
        case .unixSocket(let path): "postgresql database \(database) at \(path)"
        }
    }

    /// Loopback hosts, where a connection does not leave the machine.
    package static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
