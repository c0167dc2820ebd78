/// The secret values the vault keeps per identity.
///
/// The raw value names the vault column and is bound into each sealed
/// value's associated data, so a ciphertext copied into another column
/// fails to open.
package enum SecretKind: String, Sendable, Hashable, CaseIterable {
    case refreshToken = "refresh_token"
    /// The refresh token used by the last rotating refresh, kept until its
    /// successor has been used once successfully (docs/DESIGN.md, "The vault", durability).
    case previousRefreshToken = "previous_refresh_token"
    case accessToken = "access_token"
    case sessionID = "session_id"
    case clientSecret = "client_secret"
}
