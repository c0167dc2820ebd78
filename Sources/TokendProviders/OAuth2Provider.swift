import Foundation
import NIOHTTP1
import TokendCore

/// How an OAuth2 client authenticates at the token endpoint (RFC 6749 §2.3).
package enum ClientAuthMethod: String, Sendable, Hashable, CaseIterable {
    /// HTTP Basic with the form-encoded client id and secret (the default).
    case clientSecretBasic = "client_secret_basic"
    /// `client_id` and `client_secret` in the request body.
    case clientSecretPost = "client_secret_post"
    /// A public client: `client_id` in the body, no secret.
    case none
}

/// Settings of an `oauth2` provider, validated at configuration time.
package struct OAuth2Settings: Sendable {
    package var name: String
    package var tokenEndpoint: String
    package var clientID: String?
    package var clientSecret: Secret?
    package var clientAuth: ClientAuthMethod
    package var scope: String?
    package var resource: String?
    package var audience: String?
    /// Lifetime assumed when a response has neither `expires_in` nor a JWT `exp`.
    package var defaultLifetime: TimeInterval
    package var requestTimeout: Duration
    package var allowInsecureHTTP: Bool
    /// A private CA trusted besides the system store (`ca_file`).
    package var trust: ProviderTrust?

    package init(
        name: String, tokenEndpoint: String, clientID: String? = nil, clientSecret: Secret? = nil,
        clientAuth: ClientAuthMethod = .clientSecretBasic, scope: String? = nil, resource: String? = nil,
        audience: String? = nil, defaultLifetime: TimeInterval = 3600, requestTimeout: Duration = .seconds(10),
        allowInsecureHTTP: Bool = false, trust: ProviderTrust? = nil
    ) {
        self.name = name
        self.tokenEndpoint = tokenEndpoint
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.clientAuth = clientAuth
        self.scope = scope
        self.resource = resource
        self.audience = audience
        self.defaultLifetime = defaultLifetime
        self.requestTimeout = requestTimeout
        self.allowInsecureHTTP = allowInsecureHTTP
        self.trust = trust
    }
}

extension OAuth2Settings {
    /// Checks the endpoint and the client authentication; returns the
    /// token URL to use.
    ///
    /// - Throws: ``ProviderError`` `.clientMisconfigured` with a message
    ///   naming the provider and the fix.
    package func validatedTokenURL() throws -> String {
        let url = try EndpointURL.validated(
            tokenEndpoint, allowInsecureHTTP: allowInsecureHTTP, provider: name, isBase: false)
        switch clientAuth {
        case .clientSecretBasic, .clientSecretPost:
            guard clientID != nil, clientSecret != nil else {
                throw ProviderError(
                    .clientMisconfigured,
                    "provider \(name): \(clientAuth.rawValue) needs a client id and a client secret")
            }
        case .none:
            guard clientID != nil else {
                throw ProviderError(.clientMisconfigured, "provider \(name): a public client needs a client id")
            }
        }
        return url
    }
}

/// A generic OAuth2 token endpoint: the `refresh_token` (RFC 6749 §6) and
/// `client_credentials` (§4.4) grants.
package struct OAuth2Provider: TokenProvider {
    package let settings: OAuth2Settings
    private let http: ProviderHTTP
    private let tokenURL: String

    package var name: String { settings.name }
    package var supportsSessionAuthentication: Bool { false }

    /// - Throws: ``ProviderError`` `.clientMisconfigured` for an invalid
    ///   endpoint or client authentication that lacks what it needs.
    package init(settings: OAuth2Settings, http: ProviderHTTP) throws {
        self.tokenURL = try settings.validatedTokenURL()
        self.settings = settings
        self.http = http
    }

    private var endpoint: String { "oauth2 provider \(settings.name) token endpoint" }

    package func obtain(_ request: GrantRequest) async throws -> TokenGrant {
        var fields: [(String, String)]
        var secrets: [Secret] = settings.clientSecret.map { [$0] } ?? []
        switch request {
        case .refreshToken(let token):
            fields = [("grant_type", "refresh_token"), ("refresh_token", token.exposedValue)]
            secrets.append(token)
        case .clientCredentials:
            fields = [("grant_type", "client_credentials")]
        case .session:
            throw ProviderError(
                .unsupported, "provider \(settings.name) is oauth2; the session grant exists only for transmit providers")
        }
        if let scope = settings.scope { fields.append(("scope", scope)) }
        if let resource = settings.resource { fields.append(("resource", resource)) }
        if let audience = settings.audience { fields.append(("audience", audience)) }

        var headers = HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded")])
        switch settings.clientAuth {
        case .clientSecretBasic:
            headers.add(
                name: "Authorization",
                value: FormEncoding.basicAuthorization(
                    clientID: settings.clientID!, clientSecret: settings.clientSecret!.exposedValue))
        case .clientSecretPost:
            fields.append(("client_id", settings.clientID!))
            fields.append(("client_secret", settings.clientSecret!.exposedValue))
        case .none:
            fields.append(("client_id", settings.clientID!))
        }

        let response = try await http.send(
            method: .POST, url: tokenURL, headers: headers, body: FormEncoding.encode(fields),
            timeout: settings.requestTimeout, endpoint: endpoint, trust: settings.trust)
        guard (200..<300).contains(response.status) else {
            throw HTTPFailure.classify(response, endpoint: endpoint, scrubbing: secrets)
        }
        return try TokenResponse.parse(
            response.body, receivedAt: Date(), defaultLifetime: settings.defaultLifetime, endpoint: endpoint)
    }

    package func endSession(_ sessionID: Secret) async throws {
        throw ProviderError(.unsupported, "provider \(settings.name) is oauth2; it has no sessions to end")
    }
}
