/// How the agent obtains a new access token for an identity.
package enum GrantKind: String, Sendable, Hashable, CaseIterable {
    /// RFC 6749 §6: exchange the stored refresh token (which may rotate).
    case refreshToken = "refresh_token"
    /// RFC 6749 §4.4: the provider's client id and secret, no user involved.
    case clientCredentials = "client_credentials"
    /// Transmit: silent re-authentication from a stored `session_id`.
    case session

    /// The protocol's default when `ENROLL` names no grant: `refresh_token`
    /// when one is given, else `session` when a session id is given, else
    /// `client_credentials`.
    package static func inferred(hasRefreshToken: Bool, hasSessionID: Bool) -> GrantKind {
        if hasRefreshToken { return .refreshToken }
        if hasSessionID { return .session }
        return .clientCredentials
    }
}
