/// Something that turns a grant into a token set: the OAuth2 token endpoint,
/// or Transmit's backend-session API. The only seam through which tokend
/// talks to the network.
package protocol TokenProvider: Sendable {
    /// The provider's name in the configuration.
    var name: String { get }

    /// Performs one grant. Never retries a refresh token on its own (a
    /// replay could trip reuse detection); the engine decides.
    ///
    /// - Throws: ``ProviderError``, and nothing else.
    func obtain(_ request: GrantRequest) async throws -> TokenGrant

    /// Whether `obtain(.session(...))` can replace a dead refresh token
    /// (Transmit silent re-authentication).
    var supportsSessionAuthentication: Bool { get }

    /// Ends a provider-side session (Transmit logout), for `REMOVE logout=1`.
    func endSession(_ sessionID: Secret) async throws

    /// Where this provider's sessions are valid (Transmit: the tenant's API
    /// base URL), or nil if it has none. Two providers with the same scope
    /// are apps of one tenant: an identity of one may share its session
    /// with the other (SSO across apps).
    var sessionScope: String? { get }
}

extension TokenProvider {
    package var sessionScope: String? { nil }
}
