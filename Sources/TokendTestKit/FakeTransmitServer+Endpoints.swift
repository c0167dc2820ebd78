import Foundation
import NIOHTTP1
import Synchronization

/// The Transmit endpoints the fake answers, as the published API reference
/// describes them (client token, refresh, silent authentication, logout,
/// sessions).
extension FakeTransmitServer {
    func transmitError(_ status: Int, _ message: String) -> LoopbackHTTPAction {
        .json(status, ["message": [message], "error_code": status])
    }

    func clientToken(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
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
    func client(of request: LoopbackHTTPRequest) -> String? {
        guard let header = request.headers.first(name: "Authorization"), header.hasPrefix("Bearer ") else { return nil }
        let token = String(header.dropFirst("Bearer ".count))
        return state.withLock { state in
            guard let entry = state.clientTokens[token], entry.expiry > Date() else { return nil }
            return entry.client
        }
    }

    func tokenSet(_ state: inout State, family: Int, includeSession: Bool) -> [String: Any] {
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

    func refresh(_ request: LoopbackHTTPRequest, client: String) -> LoopbackHTTPAction {
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

    func authenticate(_ request: LoopbackHTTPRequest, client: String) -> LoopbackHTTPAction {
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

    func logout(_ request: LoopbackHTTPRequest) -> LoopbackHTTPAction {
        guard let sessionID = request.json?["session_id"] as? String else {
            return transmitError(400, "session_id is required")
        }
        return state.withLock { state in
            guard state.sessions[sessionID]?.active == true else { return transmitError(404, "Session not found") }
            state.sessions[sessionID]?.active = false
            return .empty(204)
        }
    }

    func listSessions(_ userID: String) -> LoopbackHTTPAction {
        let sessions = state.withLock { state in
            state.sessions.filter { $0.value.userID == userID && $0.value.active }.sorted { $0.key < $1.key }
        }
        let formatter = ISO8601DateFormatter()
        return .json(200, ["result": sessions.map { id, session in
            ["session_id": id, "created_at": formatter.string(from: session.createdAt),
             "expires_at": Int(session.expiresAt.timeIntervalSince1970 * 1000)] as [String: Any]
        }])
    }

    func revokeSessions(_ userID: String) -> LoopbackHTTPAction {
        state.withLock { state in
            for (id, session) in state.sessions where session.userID == userID { state.sessions[id]?.active = false }
        }
        return .empty(204)
    }
}
