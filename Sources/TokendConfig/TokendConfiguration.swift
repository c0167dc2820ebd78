import Logging
import TokendCore
import TokendProviders

/// The agent's configuration, validated: typed values with defaults. Only
/// ``ConfigLoader`` knows the file format.
package struct TokendConfiguration: Sendable {
    package static let defaultPath = "/etc/tokend/tokend.toml"
    /// Overrides the default path (for containers); `--config` overrides both.
    package static let pathEnvironmentVariable = "TOKEND_CONFIG"

    /// The file this was read from.
    package var file: String
    package var vault: VaultConfiguration
    /// The `[socket]` section, as the server takes it.
    package var socket: SocketSettings
    package var admins: AdminConfiguration
    /// Audit log file, if auditing is on.
    package var auditLog: String?
    /// Where to serve Prometheus metrics, if anywhere.
    package var metrics: MetricsListener?
    /// Providers in file order.
    package var providers: [ProviderConfiguration]
    /// Identities declared in the file, by name.
    package var identities: [IdentityConfiguration] = []
    package var logging = LoggingConfiguration()
    /// The `[refresh]` section and the providers' `rate_limit`, as the
    /// engine takes them.
    package var engine = EngineSettings()
    /// Which identity the credential helpers use for a host (`[hosts."<host>"]`).
    package var hosts: [HostCredential] = []

    package func provider(named name: String) -> ProviderConfiguration? {
        providers.first { $0.name == name }
    }
}

package struct VaultConfiguration: Sendable, Hashable {
    package static let defaultPath = "/var/lib/tokend/vault.db"
    package static let defaultKeyFile = "/etc/tokend/vault.key"

    /// The SQLite file (used by the sqlite backend, and as the source or
    /// target of `vault migrate`).
    package var path: String
    /// The key-encryption key: both backends seal with it.
    package var keySource: KeySource
    package var backend: VaultBackend
    /// The `[vault.postgresql]` table whatever the backend: with `sqlite`
    /// the agent ignores it and `tokend vault migrate` moves to it.
    package var fleetStore: FleetStoreConfiguration?

    package init(path: String = defaultPath, keySource: KeySource = .file(defaultKeyFile), backend: VaultBackend = .sqlite) {
        self.path = path
        self.keySource = keySource
        self.backend = backend
        if case .postgresql(let store) = backend { fleetStore = store }
    }
}

/// The `[metrics]` section: an HTTP listener for Prometheus, on loopback
/// TCP or on a Unix socket (never on a public address: it has no auth).
package enum MetricsListener: Sendable, Hashable {
    case tcp(host: String, port: Int)
    case unix(String)
}

/// One `[identities.<name>]` section: an identity the file declares. It is
/// created in the vault at start (or reload) if missing, its allow rules and
/// refresh point follow the file, and it is removed when the file drops it.
package struct IdentityConfiguration: Sendable {
    package var name: IdentityName
    package var provider: String
    package var grant: GrantKind
    package var allow: [String]
    package var refreshAt: Double?
    /// The first refresh token (used only when the identity is created).
    package var refreshToken: Secret?
    /// The first Transmit session id (used only when the identity is created).
    package var sessionID: Secret?
    package var tokenFile: TokenFileConfiguration?
}

extension IdentityConfiguration {
    /// The enrollment the file declares (marked as coming from it, so a
    /// reload that drops the section removes the identity).
    package var enrollment: Enrollment {
        Enrollment(
            name: name, provider: provider, grant: grant, allowRules: allow, refreshAt: refreshAt,
            refreshToken: refreshToken, sessionID: sessionID, fromConfiguration: true)
    }
}

/// Where to write an identity's current access token, for programs that
/// can only read a file. Written atomically on every change.
package struct TokenFileConfiguration: Sendable, Hashable {
    package var path: String
    package var mode: UInt32 = 0o600
    package var uid: UInt32?
    package var gid: UInt32?
}

/// The `[logging]` section (command-line flags override it).
package struct LoggingConfiguration: Sendable, Hashable {
    package var level: Logger.Level?
    package var format: LogFormat?
}

/// The `[admins]` section: who besides root and the agent's own user may
/// use the admin verbs.
package struct AdminConfiguration: Sendable, Hashable {
    package var uids: [UInt32] = []
    package var groups: [String] = []

    package init() {}
}

/// One `[providers.<name>]` section.
package enum ProviderConfiguration: Sendable {
    case oauth2(OAuth2Settings)
    case transmit(TransmitSettings)

    package var name: String {
        switch self {
        case .oauth2(let settings): settings.name
        case .transmit(let settings): settings.name
        }
    }

    package var kind: String {
        switch self {
        case .oauth2: "oauth2"
        case .transmit: "transmit"
        }
    }
}
