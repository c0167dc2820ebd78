import Foundation

/// The outcome of one successful refresh, to be made durable before the new
/// access token is served to anyone.
package struct RefreshCommit: Sendable, Hashable {
    package var name: IdentityName
    /// The generation the refresh started from. The commit fails with
    /// ``VaultError/Code/generationConflict`` if the identity changed since
    /// (re-enrolled or removed), so a late result cannot overwrite new secrets.
    package var expectedGeneration: Int64
    package var accessToken: Secret
    package var tokenType: String
    package var issuedAt: Date
    package var expiresAt: Date
    /// Present when the provider rotated the refresh token. The one used
    /// becomes the previous refresh token; absent means "keep the old one".
    package var newRefreshToken: Secret?
    /// Present when the provider returned a new session id (Transmit silent
    /// re-authentication).
    package var newSessionID: Secret?

    package init(
        name: IdentityName, expectedGeneration: Int64, accessToken: Secret, tokenType: String = "Bearer",
        issuedAt: Date, expiresAt: Date, newRefreshToken: Secret? = nil, newSessionID: Secret? = nil
    ) {
        self.name = name
        self.expectedGeneration = expectedGeneration
        self.accessToken = accessToken
        self.tokenType = tokenType
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.newRefreshToken = newRefreshToken
        self.newSessionID = newSessionID
    }
}

/// A refresh that was started (and recorded) but whose result may never have
/// been committed; crash recovery looks for these at start.
package struct RefreshIntent: Sendable, Hashable {
    package var name: IdentityName
    package var generation: Int64
    package var startedAt: Date

    package init(name: IdentityName, generation: Int64, startedAt: Date) {
        self.name = name
        self.generation = generation
        self.startedAt = startedAt
    }
}
