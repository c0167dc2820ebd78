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

    private let state = Mutex(State())
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

    private func transmitError(_ status: Int, _ message: String) -> LoopbackHTTPAction {
        .json(status, ["message": [message], "error_code": status])
    }

    private func clientToken(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
        let form = request.form
        guard form["grant_type"] == "client_credentials" else {
            return .json(400, ["error": "unsupported_grant_type", "error_description": "only client_credentials"])
        }
        return state.withLock { state in
            guard let client = form["client_id"], state.clients[client] != nil, form["client_secret"] == state.clients[client] else {
                return .json(401, ["error": "invalid_client", "error_description": "client authentication failed"])
            }
            let token = state.next("ct")
            state.clientTokens[token] = (Date().addingTimeInterval(state.clientTokenLifetime), client)
            return .json(200, ["access_token": token, "token_type": "Bearer", "expires_in": Int(state.clientTokenLifetime)])
        }
    }

    /// The app whose live client token authorizes the request.
    private func client(of request: LoopbackHTTPRequest) -> String? {
        guard let header = request.headers.first(name: "Authorization"), header.hasPrefix("Bearer ") else { return nil }
        let token = String(header.dropFirst("Bearer ".count))
        return state.withLock { state in
            guard let entry = state.clientTokens[token], entry.expiry > Date() else { return nil }
            return entry.client
        }
    }

    private func tokenSet(_ state: inout State, family: Int, includeSession: Bool) -> [String: Any] {
        let refresh = state.next("rt")
        state.refreshTokens[refresh] = (family, true)
        // Access tokens name the app they were issued to.
        var body: [String: Any] = [
            "access_token": state.next("at-\(state.families[family]!.clientID)"), "id_token": state.next("idt"), "refresh_token": refresh,
            "token_type": "Bearer", "expires_in": state.accessTokenLifetime,
        ]
        if includeSession { body["session_id"] = state.families[family]!.sessionID }
        return body
    }

    private func refresh(_ request: LoopbackHTTPRequest, client: String) -> LoopbackHTTPAction {
        guard let token = request.json?["refresh_token"] as? String else {
            return transmitError(400, "refresh_token is required")
        }
        return state.withLock { state in
            guard let entry = state.refreshTokens[token], var family = state.families[entry.family] else {
                return transmitError(401, "Invalid refresh token")
            }
            guard family.clientID == client else {
                return transmitError(400, "Refresh token was issued to another application")
            }
            guard entry.current else {
                // Reuse detection: a rotated token came back, so someone
                // holds a copy. Kill the whole family.
                state.reuseDetections += 1
                family.revoked = true
                state.families[entry.family] = family
                return transmitError(400, "Refresh token reuse detected")
            }
            guard !family.revoked, state.sessions[family.sessionID]?.active == true else {
                return transmitError(401, "Session is not active")
            }
            state.refreshTokens[token] = (entry.family, false)
            return .json(200, tokenSet(&state, family: entry.family, includeSession: false))
        }
    }

    private func authenticate(_ request: LoopbackHTTPRequest, client: String) -> LoopbackHTTPAction {
        guard let sessionID = request.json?["session_id"] as? String else {
            return transmitError(400, "session_id is required")
        }
        return state.withLock { state in
            guard let session = state.sessions[sessionID], session.active, session.expiresAt > Date() else {
                return transmitError(401, "Session not found or expired")
            }
            // Silent authentication starts a new token family for the
            // session (the old refresh tokens stay as they are).
            let family = state.counter + 1
            state.counter += 1
            state.families[family] = Family(userID: session.userID, sessionID: sessionID, clientID: client)
            return .json(200, tokenSet(&state, family: family, includeSession: true))
        }
    }

    private func logout(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
        guard let sessionID = request.json?["session_id"] as? String else {
            return transmitError(400, "session_id is required")
        }
        return state.withLock { state in
            guard state.sessions[sessionID]?.active == true else { return transmitError(404, "Session not found") }
            state.sessions[sessionID]?.active = false
            return .empty(204)
        }
    }

    private func listSessions(_ userID: String) -> LoopbackHTTPAction {
        let sessions = state.withLock { state in
            state.sessions.filter { $0.value.userID == userID && $0.value.active }.sorted { $0.key < $1.key }
        }
        let formatter = ISO8601DateFormatter()
        return .json(200, ["result": sessions.map { id, session in
            ["session_id": id, "created_at": formatter.string(from: session.createdAt),
             "expires_at": Int(session.expiresAt.timeIntervalSince1970 * 1000)] as [String: Any]
        }])
    }

    private func revokeSessions(_ userID: String) -> LoopbackHTTPAction {
        state.withLock { state in
            for (id, session) in state.sessions where session.userID == userID { state.sessions[id]?.active = false }
        }
        return .empty(204)
    }
}
