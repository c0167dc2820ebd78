import Foundation

/// Everything needed to create an identity, or to replace one's secrets.
///
/// Enrolling a name that exists replaces its secrets and bumps its
/// generation (docs/PROTOCOL.md, `ENROLL`).
package struct Enrollment: Sendable, Hashable {
    package var name: IdentityName
    package var provider: String
    package var grant: GrantKind
    package var allowRules: [String]
    package var refreshAt: Double?
    package var refreshToken: Secret?
    package var sessionID: Secret?
    package var clientSecret: Secret?
    /// An access token already in hand; served until its refresh is due, so
    /// that enrolling does not force a rotation.
    package var accessToken: Secret?
    package var accessTokenExpiresAt: Date?
    package var tokenType: String?
    /// Declared in the configuration file (kept in step with it on reload).
    package var fromConfiguration: Bool
    /// The shared session this identity joins (set by the vault when an
    /// app is enrolled from another identity's session).
    package var sessionGroup: String?

    package init(
        name: IdentityName, provider: String, grant: GrantKind? = nil, allowRules: [String] = [],
        refreshAt: Double? = nil, refreshToken: Secret? = nil, sessionID: Secret? = nil,
        clientSecret: Secret? = nil, accessToken: Secret? = nil, accessTokenExpiresAt: Date? = nil,
        tokenType: String? = nil, fromConfiguration: Bool = false
    ) {
        self.name = name
        self.provider = provider
        self.grant = grant ?? GrantKind.inferred(
            hasRefreshToken: refreshToken != nil, hasSessionID: sessionID != nil)
        self.allowRules = allowRules
        self.refreshAt = refreshAt
        self.refreshToken = refreshToken
        self.sessionID = sessionID
        self.clientSecret = clientSecret
        self.accessToken = accessToken
        self.accessTokenExpiresAt = accessTokenExpiresAt
        self.tokenType = tokenType
        self.fromConfiguration = fromConfiguration
    }
}
