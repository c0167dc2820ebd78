import Foundation
import NIOHTTP1
import TokendCore

/// Transmit Security backend sessions: token refresh, silent session
/// authentication, logout, and a user's session list.
///
/// Every `/cis` call carries the cached client access token; a 401 makes it
/// fetch a new client token and try once more, since the client token (one
/// hour, not refreshable) may have expired early on Transmit's side.
package struct TransmitProvider: TokenProvider {
    package let settings: TransmitSettings
    private let http: ProviderHTTP
    private let baseURL: String
    let clientToken: TransmitClientToken

    package var name: String { settings.name }
    package var supportsSessionAuthentication: Bool { true }
    package var sessionScope: String? { baseURL }

    package init(settings: TransmitSettings, http: ProviderHTTP) throws {
        baseURL = try settings.validatedBaseURL()
        var validated = settings
        validated.baseURL = baseURL
        self.settings = validated
        self.http = http
        self.clientToken = TransmitClientToken(settings: validated, http: http)
    }

    package func obtain(_ request: GrantRequest) async throws -> TokenGrant {
        switch request {
        case .refreshToken(let token):
            return try await tokenSet(
                path: "/v1/auth/token/refresh", body: ["refresh_token": token.exposedValue], secrets: [token],
                what: "token refresh")
        case .session(let sessionID):
            var body = ["session_id": sessionID.exposedValue]
            if let resource = settings.resource { body["resource"] = resource }
            return try await tokenSet(
                path: "/v1/auth/session/authenticate", body: body, secrets: [sessionID],
                what: "session authentication")
        case .clientCredentials:
            return try await clientToken.fetchUncached()
        }
    }

    package func endSession(_ sessionID: Secret) async throws {
        let response = try await cis(
            .POST, "/v1/auth/session/logout", body: ["session_id": sessionID.exposedValue], secrets: [sessionID],
            what: "session logout")
        // 404: the session is already gone, which is what logout wants.
        guard (200..<300).contains(response.status) || response.status == 404 else {
            throw failure(response, what: "session logout", secrets: [sessionID], grantEndpoint: false)
        }
    }

    /// The user's active backend sessions.
    package func sessions(userID: String) async throws -> [TransmitSession] {
        let what = "session list"
        let response = try await cis(.GET, "/v1/auth/users/\(try Self.pathSegment(userID))/sessions", body: nil, secrets: [], what: what)
        guard (200..<300).contains(response.status) else {
            throw failure(response, what: what, secrets: [], grantEndpoint: false)
        }
        return try TransmitSessionList.parse(response.body, endpoint: endpointName(what))
    }

    /// Ends every backend session of the user (and so their refresh tokens).
    package func revokeSessions(userID: String) async throws {
        let what = "session revocation"
        let response = try await cis(.DELETE, "/v1/auth/users/\(try Self.pathSegment(userID))/sessions", body: nil, secrets: [], what: what)
        guard (200..<300).contains(response.status) else {
            throw failure(response, what: what, secrets: [], grantEndpoint: false)
        }
    }

    // MARK: - Requests

    private func endpointName(_ what: String) -> String { "transmit provider \(settings.name) \(what)" }

    private func tokenSet(path: String, body: [String: String], secrets: [Secret], what: String) async throws -> TokenGrant {
        let response = try await cis(.POST, path, body: body, secrets: secrets, what: what)
        guard (200..<300).contains(response.status) else {
            throw failure(response, what: what, secrets: secrets, grantEndpoint: true)
        }
        return try TokenResponse.parse(
            response.body, receivedAt: Date(), defaultLifetime: settings.defaultLifetime, endpoint: endpointName(what))
    }

    /// One `/cis` call with the client token, retried once with a new client
    /// token after a 401.
    private func cis(
        _ method: HTTPMethod, _ path: String, body: [String: String]?, secrets: [Secret], what: String
    ) async throws -> ProviderHTTP.Response {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
        var response: ProviderHTTP.Response? = nil
        for _ in 0..<2 {
            let token = try await clientToken.current()
            var headers = HTTPHeaders([("Authorization", "Bearer \(token.exposedValue)")])
            if payload != nil { headers.add(name: "Content-Type", value: "application/json") }
            let answer = try await http.send(
                method: method, url: baseURL + "/cis" + path, headers: headers, body: payload,
                timeout: settings.requestTimeout, endpoint: endpointName(what), trust: settings.trust)
            response = answer
            guard answer.status == 401 else { break }
            await clientToken.invalidate(token)
        }
        return response!
    }

    /// Classifies a failed `/cis` answer. On the grant endpoints (refresh,
    /// authenticate) a 400, or a 401 that survived a fresh client token,
    /// means the refresh token or session is dead.
    private func failure(
        _ response: ProviderHTTP.Response, what: String, secrets: [Secret], grantEndpoint: Bool
    ) -> ProviderError {
        let endpoint = endpointName(what)
        if grantEndpoint, response.status == 400 || response.status == 401 {
            let detail = ProviderErrorBody(parsing: response.body)
            let summary = detail.summary(scrubbing: secrets + [settings.clientSecret])
            return ProviderError(
                .invalidGrant,
                "\(endpoint) rejected the \(what == "token refresh" ? "refresh token" : "session") "
                    + "(HTTP \(response.status)\(summary.isEmpty ? "" : ": \(summary)"))",
                providerCode: detail.code)
        }
        if response.status == 401 {
            return ProviderError(
                .clientMisconfigured, "\(endpoint) refused the client token twice (HTTP 401); check the client credentials")
        }
        return HTTPFailure.classify(response, endpoint: endpoint, scrubbing: secrets + [settings.clientSecret])
    }

    static func pathSegment(_ text: String) throws -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        guard !text.isEmpty, let encoded = text.addingPercentEncoding(withAllowedCharacters: allowed) else {
            throw ProviderError(.clientMisconfigured, "a user id must not be empty")
        }
        return encoded
    }
}
