import Foundation
import NIOHTTP1
import TokendCore

/// Transmit's client access token: fetched with the client credentials,
/// cached, renewed ahead of its (one-hour) expiry, shared by every request.
///
/// It cannot be refreshed, only fetched again. Concurrent callers share one
/// fetch, so a burst of refreshes at start costs one `/oidc/token` call.
actor TransmitClientToken {
    private enum State {
        case empty
        case valid(Secret, renewAt: ContinuousClock.Instant)
        case fetching(Task<(Secret, TimeInterval), any Error>)
    }

    private let settings: TransmitSettings
    private let http: ProviderHTTP
    private let clock = ContinuousClock()
    private var state: State = .empty

    init(settings: TransmitSettings, http: ProviderHTTP) {
        self.settings = settings
        self.http = http
    }

    /// The cached token, or a new one if there is none or it is due.
    func current() async throws -> Secret {
        switch state {
        case .valid(let token, let renewAt) where clock.now < renewAt:
            return token
        case .fetching(let task):
            return try await task.value.0
        case .empty, .valid:
            return try await fetch()
        }
    }

    /// Forgets `token` after the API rejected it with 401, unless another
    /// caller already replaced it.
    func invalidate(_ token: Secret) {
        if case .valid(let cached, _) = state, cached == token { state = .empty }
    }

    /// Fetches a new client token without touching the cache (for identities
    /// whose grant is `client_credentials`).
    func fetchUncached() async throws -> TokenGrant {
        try await Self.request(settings: settings, http: http)
    }

    private func fetch() async throws -> Secret {
        let settings = settings
        let http = http
        let task = Task { () throws -> (Secret, TimeInterval) in
            let grant = try await Self.request(settings: settings, http: http)
            return (grant.accessToken, grant.lifetime)
        }
        state = .fetching(task)
        do {
            let (token, lifetime) = try await task.value
            // Renew `renewBefore` ahead of expiry, or at half-life for
            // tokens too short for that.
            let margin = min(settings.clientTokenRenewBefore, lifetime / 2)
            state = .valid(token, renewAt: clock.now + WholeSeconds.duration(lifetime - margin))
            return token
        } catch {
            state = .empty
            throw error
        }
    }

    private static func request(settings: TransmitSettings, http: ProviderHTTP) async throws -> TokenGrant {
        let endpoint = "transmit provider \(settings.name) client token endpoint"
        var fields = [
            ("grant_type", "client_credentials"), ("client_id", settings.clientID),
            ("client_secret", settings.clientSecret.exposedValue),
        ]
        if let resource = settings.resource { fields.append(("resource", resource)) }
        let response = try await http.send(
            method: .POST, url: settings.baseURL + "/oidc/token",
            headers: HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded")]),
            body: FormEncoding.encode(fields), timeout: settings.requestTimeout, endpoint: endpoint,
            trust: settings.trust)
        guard (200..<300).contains(response.status) else {
            var error = HTTPFailure.classify(response, endpoint: endpoint, scrubbing: [settings.clientSecret])
            // Any other 4xx from the client-token endpoint is the client's
            // own credentials being refused, never a user's grant.
            if error.kind == .invalidGrant { error.kind = .clientMisconfigured }
            throw error
        }
        return try TokenResponse.parse(response.body, receivedAt: Date(), defaultLifetime: 3600, endpoint: endpoint)
    }
}
