import Foundation
import TokendCore

/// Transmit Security's API hosts.
package enum TransmitRegion: String, Sendable, CaseIterable {
    case us, eu, ca, au, sandbox

    package var baseURL: String {
        switch self {
        case .us: "https://api.transmitsecurity.io"
        case .eu: "https://api.eu.transmitsecurity.io"
        case .ca: "https://api.ca.transmitsecurity.io"
        case .au: "https://api.au.transmitsecurity.io"
        case .sandbox: "https://api.sbx.transmitsecurity.io"
        }
    }
}

/// Settings of a `transmit` provider, validated at configuration time.
package struct TransmitSettings: Sendable {
    package var name: String
    /// The API host, e.g. `https://api.eu.transmitsecurity.io` (a region
    /// preset's URL, or an explicit one).
    package var baseURL: String
    package var clientID: String
    package var clientSecret: Secret
    /// Optional `resource` for the client token and silent authentication.
    package var resource: String?
    package var requestTimeout: Duration
    /// Lifetime assumed for a token set without `expires_in` or JWT `exp`.
    package var defaultLifetime: TimeInterval
    /// The client access token is renewed once less than this remains.
    package var clientTokenRenewBefore: TimeInterval
    package var allowInsecureHTTP: Bool
    /// A private CA trusted besides the system store (`ca_file`).
    package var trust: ProviderTrust?

    package init(
        name: String, baseURL: String, clientID: String, clientSecret: Secret, resource: String? = nil,
        requestTimeout: Duration = .seconds(10), defaultLifetime: TimeInterval = 3600,
        clientTokenRenewBefore: TimeInterval = 300, allowInsecureHTTP: Bool = false,
        trust: ProviderTrust? = nil
    ) {
        self.name = name
        self.baseURL = baseURL
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.resource = resource
        self.requestTimeout = requestTimeout
        self.defaultLifetime = defaultLifetime
        self.clientTokenRenewBefore = clientTokenRenewBefore
        self.allowInsecureHTTP = allowInsecureHTTP
        self.trust = trust
    }
}

extension TransmitSettings {
    /// Checks the API URL; returns it without a trailing slash.
    package func validatedBaseURL() throws -> String {
        try EndpointURL.validated(baseURL, allowInsecureHTTP: allowInsecureHTTP, provider: name, isBase: true)
    }
}

/// One backend session of a user, as `GET /v1/auth/users/{userId}/sessions`
/// lists it.
package struct TransmitSession: Sendable, Hashable {
    /// The session id. It is a credential (with the client secret it can
    /// mint tokens): show it to operators, never log it.
    package var sessionID: Secret
    package var createdAt: Date?
    package var expiresAt: Date?
}
