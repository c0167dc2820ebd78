import Foundation

/// What a provider is asked for: one request type for every grant.
package enum GrantRequest: Sendable, Hashable {
    /// RFC 6749 §6 (OAuth2) or Transmit's token refresh.
    case refreshToken(Secret)
    /// RFC 6749 §4.4: the provider's own client credentials.
    case clientCredentials
    /// Transmit silent re-authentication from a backend session id.
    case session(Secret)
}

/// A token set returned by a provider, whatever the grant.
package struct TokenGrant: Sendable, Hashable {
    package var accessToken: Secret
    package var tokenType: String
    /// When the response was received; the lifetime counts from here.
    package var receivedAt: Date
    /// How long the access token lives: `expires_in`, else the JWT's `exp`,
    /// else the provider's configured default. May be zero or negative when
    /// a provider says so; the refresh planner deals with that.
    package var lifetime: TimeInterval
    /// Present when the provider rotated the refresh token (the old one is
    /// dead from now on); nil means "keep the old one".
    package var refreshToken: Secret?
    /// Present when the provider returned a (new) session id.
    package var sessionID: Secret?
    package var scope: String?

    package init(
        accessToken: Secret, tokenType: String = "Bearer", receivedAt: Date, lifetime: TimeInterval,
        refreshToken: Secret? = nil, sessionID: Secret? = nil, scope: String? = nil
    ) {
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.receivedAt = receivedAt
        self.lifetime = lifetime
        self.refreshToken = refreshToken
        self.sessionID = sessionID
        self.scope = scope
    }

    package var expiresAt: Date { receivedAt.addingTimeInterval(lifetime) }
}
