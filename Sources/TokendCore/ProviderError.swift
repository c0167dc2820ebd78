/// A provider call that did not yield a token, classified for the engine.
///
/// The engine acts on ``kind`` only: back off, fall back to silent
/// re-authentication, mark the provider misconfigured, or distrust the
/// response. The message is for logs and `STATUS`: it names the provider,
/// the endpoint and the provider's own error code, never a secret.
package struct ProviderError: Error, Sendable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable {
        /// Timeouts, connection errors, 5xx, 429: try again later, no sooner
        /// than `retryAfter` (seconds) when the provider said so.
        case transient(retryAfter: Double?)
        /// The refresh token or session is dead (`invalid_grant`; Transmit
        /// 400/401 on refresh or authenticate). Retrying will not help.
        case invalidGrant
        /// The client itself is rejected (`invalid_client`,
        /// `unauthorized_client`, 403, wrong endpoint): fix the config.
        case clientMisconfigured
        /// The response was not a usable token response (bad JSON, missing
        /// or mistyped fields, too large).
        case malformedResponse
        /// The provider does not support this operation or grant.
        case unsupported
    }

    package var kind: Kind
    package var message: String
    /// The provider's own error code (`invalid_grant`, Transmit's
    /// `error_code`), if it sent one.
    package var providerCode: String?

    package init(_ kind: Kind, _ message: String, providerCode: String? = nil) {
        self.kind = kind
        self.message = message
        self.providerCode = providerCode
    }

    package var description: String { message }

    /// A short wire-safe code for `STATUS ... last_error=<code>`.
    package var code: String {
        switch kind {
        case .transient: "transient"
        case .invalidGrant: "invalid_grant"
        case .clientMisconfigured: "client_misconfigured"
        case .malformedResponse: "malformed_response"
        case .unsupported: "unsupported"
        }
    }
}
