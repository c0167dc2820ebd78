import Foundation
import Synchronization
import TokendLoopbackHTTP

/// The quickstart's built-in provider: a real OAuth2 token endpoint on
/// loopback that issues short-lived access tokens and rotates refresh
/// tokens, with reuse detection, so the demo shows tokend doing its job.
final class DemoTokenServer: Sendable {
    static let clientID = "tokend-demo"

    private struct State {
        /// refresh token → (family, current)
        var refreshTokens: [String: (family: Int, current: Bool)] = [:]
        var revokedFamilies: Set<Int> = []
        var nextFamily = 0
    }

    let clientSecret: String
    let lifetime: Int
    private let state = Mutex(State())
    private let server = Mutex<LoopbackHTTPServer?>(nil)

    var tokenURL: String { server.withLock { $0!.baseURL } + "/oauth2/token" }

    init(lifetime: Int) {
        self.lifetime = lifetime
        clientSecret = Self.random(24)
    }

    func start() async throws {
        let started = try await LoopbackHTTPServer.start { [self] request in self.handle(request) }
        server.withLock { $0 = started }
    }

    func shutdown() async {
        await server.withLock { $0 }?.shutdown()
    }

    /// A refresh token for a new sign-in, as a backend would have it.
    func mintRefreshToken() -> String {
        state.withLock { state in
            state.nextFamily += 1
            let token = "demo-rt-" + Self.random(20)
            state.refreshTokens[token] = (state.nextFamily, true)
            return token
        }
    }

    private func handle(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
        guard request.method == .POST, request.path == "/oauth2/token" else {
            return .json(404, ["error": "invalid_request", "error_description": "POST /oauth2/token"])
        }
        let expected = "Basic " + Data("\(Self.clientID):\(clientSecret)".utf8).base64EncodedString()
        guard request.headers.first(name: "Authorization") == expected else {
            return .json(401, ["error": "invalid_client"])
        }
        let form = request.form
        switch form["grant_type"] {
        case "client_credentials":
            return .json(200, tokenResponse(refreshToken: nil))
        case "refresh_token":
            guard let presented = form["refresh_token"] else { return .json(400, ["error": "invalid_request"]) }
            return state.withLock { state in
                guard let entry = state.refreshTokens[presented], !state.revokedFamilies.contains(entry.family) else {
                    return .json(400, ["error": "invalid_grant", "error_description": "unknown or revoked refresh token"])
                }
                guard entry.current else {
                    state.revokedFamilies.insert(entry.family)
                    return .json(400, ["error": "invalid_grant", "error_description": "refresh token reused; family revoked"])
                }
                state.refreshTokens[presented] = (entry.family, false)
                let rotated = "demo-rt-" + Self.random(20)
                state.refreshTokens[rotated] = (entry.family, true)
                return .json(200, tokenResponse(refreshToken: rotated))
            }
        default:
            return .json(400, ["error": "unsupported_grant_type"])
        }
    }

    private func tokenResponse(refreshToken: String?) -> [String: Any] {
        var body: [String: Any] = ["access_token": "demo-at-" + Self.random(32), "token_type": "Bearer", "expires_in": lifetime]
        if let refreshToken { body["refresh_token"] = refreshToken }
        return body
    }

    static func random(_ count: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in alphabet.randomElement(using: &generator)! })
    }
}
