@_exported import TokendLoopbackHTTP
import Foundation
import NIOHTTP1
import Synchronization

/// A fault the fake server applies to upcoming requests.
package enum FakeFault: Sendable {
    /// Answer with this status (and `Retry-After`, if given) and Transmit's
    /// error shape.
    case status(Int, retryAfter: String? = nil)
    /// Wait this long before answering normally (to trip client timeouts).
    case delay(Duration)
    /// 200 with a body that is not JSON.
    case garbage
    /// 200 with JSON whose fields have the wrong types.
    case wrongTypes
    /// 200 with a 2 MiB body, with or without `Content-Length`.
    case hugeBody(declareLength: Bool)
    /// Reset the connection without answering.
    case reset
}

/// A fake Transmit Security API on loopback HTTP, following the documented
/// request and response shapes (docs/DESIGN.md, "Providers"): the client token
/// endpoint, backend-session refresh with rotation and reuse detection,
/// silent session authentication, logout, and a user's sessions.
///
/// ```swift
/// let fake = try await FakeTransmitServer.start()
/// let (refreshToken, sessionID) = fake.mintSession(userID: "user-1")
/// fake.inject(.status(503), path: "/cis/v1/auth/token/refresh")
/// ```
package final class FakeTransmitServer: Sendable {
    package static let clientID = "tokend-test-client"
    package static let clientSecret = "fake-client-secret-5b1e"

    struct Family {
        var userID: String
        var sessionID: String
        /// The app (client) the family's refresh tokens were issued to:
        /// only it may use them.
        var clientID: String
        var revoked = false
    }

    struct Session {
        var userID: String
        var createdAt: Date
        var expiresAt: Date
        var active = true
    }

    struct State {
        /// The tenant's apps: client id → client secret.
        var clients: [String: String] = [FakeTransmitServer.clientID: FakeTransmitServer.clientSecret]
        /// Client access token → (expiry, the app it was issued to).
        var clientTokens: [String: (expiry: Date, client: String)] = [:]
        var clientTokenLifetime: TimeInterval = 3600
        var accessTokenLifetime: Int = 300
        /// refresh token → (family id, still the family's current token)
        var refreshTokens: [String: (family: Int, current: Bool)] = [:]
        var families: [Int: Family] = [:]
        var sessions: [String: Session] = [:]
        var faults: [(path: String?, fault: FakeFault)] = []
        var requests: [String: Int] = [:]
        var reuseDetections = 0
        var lastHeaders: [String: HTTPHeaders] = [:]
        var counter = 0

        mutating func next(_ prefix: String) -> String {
            counter += 1
            return "\(prefix)-\(counter)-\(UUID().uuidString.prefix(8))"
        }
    }

    let state = Mutex(State())
    private let server = Mutex<LoopbackHTTPServer?>(nil)

    package var baseURL: String { server.withLock { $0!.baseURL } }

    private init() {}

    package static func start() async throws -> FakeTransmitServer {
        let fake = FakeTransmitServer()
        let server = try await LoopbackHTTPServer.start { [fake] request in fake.handle(request) }
        fake.server.withLock { $0 = server }
        return fake
    }

    package func shutdown() async {
        let running = server.withLock { $0 }
        await running?.shutdown()
    }

    // MARK: - Test controls

    /// Creates a backend session for `userID`, as a completed backend
    /// authentication would, and returns its refresh token and session id.
    package func mintSession(userID: String, clientID: String = FakeTransmitServer.clientID) -> (refreshToken: String, sessionID: String) {
        state.withLock { state in
            let sessionID = state.next("sid")
            state.sessions[sessionID] = Session(
                userID: userID, createdAt: Date(), expiresAt: Date().addingTimeInterval(86_400))
            let refresh = state.next("rt")
            let family = state.counter
            state.families[family] = Family(userID: userID, sessionID: sessionID, clientID: clientID)
            state.refreshTokens[refresh] = (family, true)
            return (refresh, sessionID)
        }
    }

    /// Adds another app (client) of the same tenant: SSO across apps.
    package func addApp(clientID: String, secret: String) {
        state.withLock { $0.clients[clientID] = secret }
    }

    /// Ends every session of the user (as a sign-out elsewhere would).
    package func revokeUserSessions(_ userID: String) {
        state.withLock { state in
            for (id, session) in state.sessions where session.userID == userID { state.sessions[id]?.active = false }
        }
    }

    /// Queues a fault for the next request (to `path`, if given).
    package func inject(_ fault: FakeFault, path: String? = nil, times: Int = 1) {
        state.withLock { state in
            for _ in 0..<times { state.faults.append((path, fault)) }
        }
    }

    /// Makes every client access token issued so far expire now.
    package func expireClientTokens() {
        state.withLock { state in
            for token in state.clientTokens.keys { state.clientTokens[token]?.expiry = .distantPast }
        }
    }

    package func setAccessTokenLifetime(_ seconds: Int) {
        state.withLock { $0.accessTokenLifetime = seconds }
    }

    /// Requests received for `path` (exact, without query).
    package func requestCount(_ path: String) -> Int {
        state.withLock { $0.requests[path] ?? 0 }
    }

    /// How many times a rotated refresh token was replayed.
    package var reuseDetections: Int { state.withLock { $0.reuseDetections } }

    /// The headers of the last request to `path`.
    package func lastHeaders(_ path: String) -> HTTPHeaders? {
        state.withLock { $0.lastHeaders[path] }
    }

    /// Whether the session is still active.
    package func isSessionActive(_ sessionID: String) -> Bool {
        state.withLock { $0.sessions[sessionID]?.active ?? false }
    }

    /// Whether `refreshToken` is the live, current token of a live family.
    package func isRefreshTokenLive(_ refreshToken: String) -> Bool {
        state.withLock { state in
            guard let entry = state.refreshTokens[refreshToken], entry.current,
                let family = state.families[entry.family]
            else { return false }
            return !family.revoked && state.sessions[family.sessionID]?.active == true
        }
    }

    // MARK: - Routing

    private func handle(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
        let path = String(request.path.split(separator: "?", maxSplits: 1).first ?? "")
        let fault: FakeFault? = state.withLock { state in
            state.requests[path, default: 0] += 1
            state.lastHeaders[path] = request.headers
            guard let index = state.faults.firstIndex(where: { $0.path == nil || $0.path == path }) else { return nil }
            return state.faults.remove(at: index).fault
        }
        if let fault, let action = apply(fault) { return action }
        var action = route(request, path: path)
        if case .delay(let delay) = fault, case .respond(let status, let headers, let body, _, let declare) = action {
            action = .respond(status: status, headers: headers, body: body, delay: delay, declareLength: declare)
        }
        return action
    }

    private func apply(_ fault: FakeFault) -> LoopbackHTTPAction? {
        switch fault {
        case .status(let status, let retryAfter):
            return .json(
                status, ["message": "injected failure", "error_code": status],
                headers: retryAfter.map { [("Retry-After", $0)] } ?? [])
        case .garbage:
            return .respond(status: 200, headers: [("Content-Type", "application/json")], body: Data("<html>oops".utf8))
        case .wrongTypes:
            return .json(200, ["access_token": 12345, "expires_in": "soon", "token_type": "Bearer"])
        case .hugeBody(let declareLength):
            let body = Data(repeating: 0x20, count: 2 << 20)
            return .respond(status: 200, headers: [("Content-Type", "application/json")], body: body, declareLength: declareLength)
        case .reset:
            return .reset
        case .delay:
            return nil
        }
    }

    private func route(_ request: LoopbackHTTPRequest, path: String) -> LoopbackHTTPAction {
        switch (request.method, path) {
        case (.POST, "/oidc/token"):
            return clientToken(request)
        default:
            break
        }
        guard path.hasPrefix("/cis/") else { return transmitError(404, "no such endpoint") }
        guard let client = client(of: request) else { return transmitError(401, "Unauthorized") }
        let segments = path.split(separator: "/").map(String.init)
        switch (request.method, path) {
        case (.POST, "/cis/v1/auth/token/refresh"):
            return refresh(request, client: client)
        case (.POST, "/cis/v1/auth/session/authenticate"):
            return authenticate(request, client: client)
        case (.POST, "/cis/v1/auth/session/logout"):
            return logout(request)
        default:
            // /cis/v1/auth/users/{userId}/sessions
            if segments.count == 6, segments[1...3] == ["v1", "auth", "users"], segments[5] == "sessions" {
                let userID = segments[4].removingPercentEncoding ?? segments[4]
                if request.method == .GET { return listSessions(userID) }
                if request.method == .DELETE { return revokeSessions(userID) }
            }
            return transmitError(404, "no such endpoint")
        }
    }
}
