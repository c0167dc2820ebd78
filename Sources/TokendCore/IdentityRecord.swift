import Foundation

/// What the vault knows about an identity, apart from its secrets.
///
/// Safe to log, list and send to admins: it holds no token material.
package struct IdentityRecord: Sendable, Hashable {
    package var name: IdentityName
    /// The configured provider that refreshes this identity.
    package var provider: String
    package var grant: GrantKind
    /// Access rules as written (`uid:1001`, `group:billing`, ...); the
    /// server parses them, the vault only keeps them.
    package var allowRules: [String]
    /// Per-identity refresh point as a fraction of the token lifetime, or
    /// nil for the agent's default.
    package var refreshAt: Double?
    package var state: IdentityState
    /// Bumped by every enrollment and every committed refresh; the engine
    /// commits only against the generation it started from.
    package var generation: Int64
    package var createdAt: Date
    package var updatedAt: Date
    /// When the current access token was issued, if there is one.
    package var issuedAt: Date?
    /// When the current access token expires, if there is one.
    package var expiresAt: Date?
    package var tokenType: String?
    /// A short, secret-free description of the last failure.
    package var lastError: String?
    /// Declared in the configuration file rather than enrolled at run time.
    package var fromConfiguration: Bool = false
    /// The shared Transmit session this identity belongs to (SSO across
    /// apps): a random reference, never derived from the session id. The
    /// identities of one session hold the same session id and share its fate.
    package var sessionGroup: String?

    package init(
        name: IdentityName, provider: String, grant: GrantKind, allowRules: [String] = [],
        refreshAt: Double? = nil, state: IdentityState = .pending, generation: Int64 = 1,
        createdAt: Date, updatedAt: Date, issuedAt: Date? = nil, expiresAt: Date? = nil,
        tokenType: String? = nil, lastError: String? = nil
    ) {
        self.name = name
        self.provider = provider
        self.grant = grant
        self.allowRules = allowRules
        self.refreshAt = refreshAt
        self.state = state
        self.generation = generation
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.tokenType = tokenType
        self.lastError = lastError
    }
}

/// The secret values of one identity, decrypted. Every field prints as
/// `<redacted>`.
package struct IdentitySecrets: Sendable, Hashable {
    package var refreshToken: Secret?
    package var previousRefreshToken: Secret?
    package var accessToken: Secret?
    package var sessionID: Secret?
    package var clientSecret: Secret?

    package init(
        refreshToken: Secret? = nil, previousRefreshToken: Secret? = nil, accessToken: Secret? = nil,
        sessionID: Secret? = nil, clientSecret: Secret? = nil
    ) {
        self.refreshToken = refreshToken
        self.previousRefreshToken = previousRefreshToken
        self.accessToken = accessToken
        self.sessionID = sessionID
        self.clientSecret = clientSecret
    }

    package subscript(kind: SecretKind) -> Secret? {
        get {
            switch kind {
            case .refreshToken: refreshToken
            case .previousRefreshToken: previousRefreshToken
            case .accessToken: accessToken
            case .sessionID: sessionID
            case .clientSecret: clientSecret
            }
        }
        set {
            switch kind {
            case .refreshToken: refreshToken = newValue
            case .previousRefreshToken: previousRefreshToken = newValue
            case .accessToken: accessToken = newValue
            case .sessionID: sessionID = newValue
            case .clientSecret: clientSecret = newValue
            }
        }
    }
}

/// An identity as loaded from the vault: its record and, unless it is
/// ``IdentityState/corrupt``, its decrypted secrets.
package struct StoredIdentity: Sendable, Hashable {
    package var record: IdentityRecord
    package var secrets: IdentitySecrets

    package init(record: IdentityRecord, secrets: IdentitySecrets) {
        self.record = record
        self.secrets = secrets
    }
}
