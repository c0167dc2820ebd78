/// Where an identity stands, as reported by `STATUS` and kept in the vault.
package enum IdentityState: String, Sendable, Hashable, CaseIterable {
    /// Enrolled; the first access token has not been obtained yet.
    case pending
    /// Holds a valid access token and refreshes on schedule.
    case fresh
    /// A refresh is running right now.
    case refreshing
    /// The access token is still valid but refreshing it keeps failing.
    case stale
    /// No valid access token; refresh is failing and being retried.
    case expired
    /// The provider rejected the grant; an operator must re-enroll.
    case reauthRequired = "reauth_required"
    /// A sealed value failed to decrypt (tampered, moved, or wrong data key).
    /// Only this identity is affected; re-enrolling it replaces its secrets.
    case corrupt
}
