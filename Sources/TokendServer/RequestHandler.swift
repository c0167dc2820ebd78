import Foundation
import Logging
import Metrics
import Synchronization
import TokendCore
import TokendCache
import TokendProtocol

/// Turns one parsed request and its peer into a reply: the whole protocol
/// logic, as a plain async function, testable without a socket.
package struct RequestHandler: Sendable {
    /// What the connection should do next.
    package enum Outcome: Sendable {
        case reply(Reply)
        /// Reply, then close the connection (`QUIT`, `too_long`).
        case close(Reply)
        /// Reply, then push a line on every change of the identity (`WATCH`).
        case watch(IdentityName, Reply)
    }

    let backend: any ServerBackend
    let policy: AccessPolicy
    let audit: AuditLog?
    /// Longest wait for a refresh that a `GET min_ttl=` (or `REFRESH`) triggered.
    let refreshWait: Duration
    let now: @Sendable () -> Date
    let listCursors = ListCursors()
    let connections: @Sendable () -> Int
    let logger: Logger

    package init(
        backend: any ServerBackend, policy: AccessPolicy, audit: AuditLog? = nil, refreshWait: Duration = .seconds(10),
        now: @escaping @Sendable () -> Date = { Date() }, connections: @escaping @Sendable () -> Int = { 0 },
        logger: Logger = Logger(label: "tokend.server")
    ) {
        self.backend = backend
        self.policy = policy
        self.audit = audit
        self.refreshWait = refreshWait
        self.now = now
        self.connections = connections
        self.logger = logger
    }

    package func handle(_ parsed: Result<Request, ProtocolError>, peer: PeerCredentials) async -> Outcome {
        let request: Request
        switch parsed {
        case .success(let value): request = value
        case .failure(let error): return .reply(.error(error))
        }
        logger.debug(
            "request", metadata: ["tokend.verb": "\(request.verb)", "tokend.peer.uid": "\(peer.uid)", "tokend.peer.pid": "\(peer.pid)"])
        if request.isAdmin && !policy.isAdmin(peer) {
            audit?.record(peer: peer, verb: request.verb, identity: request.identity, result: "forbidden")
            return .reply(.error(.forbidden, "\(request.verb) is an admin verb; uid \(peer.uid) is not an admin"))
        }
        switch request {
        case .ping: return .reply(.ok(["PONG"]))
        case .hello: return .reply(.ok(["tokend", "proto=1", "version=\(TokendVersion.current)"]))
        case .quit: return .close(.ok(["BYE"]))
        case .get(let name, let minimumTTL):
            let reply = await get(name, minimumTTL: minimumTTL, peer: peer, verb: "GET")
            GetRequestMetrics.count(Self.result(of: reply))
            return .reply(reply)
        case .watch(let name):
            let first = await get(name, minimumTTL: nil, peer: peer, verb: "WATCH")
            if case .error(let code, _, _) = first, code == .forbidden || code == .notFound { return .reply(first) }
            return .watch(name, first)
        case .status(let name): return .reply(await status(name, peer: peer))
        case .list(let prefix, let after, let limit): return .reply(list(prefix: prefix, after: after, limit: limit, peer: peer))
        case .refresh(let name): return .reply(await refresh(name, peer: peer))
        case .enroll(let enrollment): return .reply(await enroll(enrollment, peer: peer))
        case .remove(let name, let logout): return .reply(await remove(name, logout: logout, peer: peer))
        case .reload: return .reply(await reload(peer: peer))
        case .stats: return .reply(await stats())
        }
    }

    /// The snapshot if the peer may read it, else the reply to send:
    /// `forbidden` for unknown names too, unless the peer is an admin, so
    /// names cannot be probed.
    private enum Access {
        case granted(TokenSnapshot)
        case denied(Reply)
    }

    private func readable(_ name: IdentityName, peer: PeerCredentials, verb: String) -> Access {
        guard let snapshot = backend.cache.snapshot(name) else {
            if policy.isAdmin(peer) {
                audit?.record(peer: peer, verb: verb, identity: name, result: "not_found")
                return .denied(.error(.notFound, "no identity \(name)"))
            }
            audit?.record(peer: peer, verb: verb, identity: name, result: "forbidden")
            return .denied(.error(.forbidden, "identity not permitted for uid \(peer.uid)"))
        }
        guard policy.mayRead(snapshot.allowRules, peer: peer) else {
            audit?.record(peer: peer, verb: verb, identity: name, result: "forbidden")
            return .denied(.error(.forbidden, "identity not permitted for uid \(peer.uid)"))
        }
        return .granted(snapshot)
    }

    private func get(_ name: IdentityName, minimumTTL: Int?, peer: PeerCredentials, verb: String) async -> Reply {
        var snapshot: TokenSnapshot
        switch readable(name, peer: peer, verb: verb) {
        case .denied(let reply): return reply
        case .granted(let found): snapshot = found
        }
        let time = now()
        let admin = policy.isAdmin(peer)
        let minimumTTL = admin ? minimumTTL : minimumTTL.map { Self.readerMinimumTTL($0, snapshot) }
        let servable = snapshot.servableToken(at: time) != nil
        let wantsRefresh = minimumTTL.map { snapshot.expiresIn(at: time) < $0 } ?? false
        // Refresh first when asked (min_ttl), or when there is no valid token
        // but a refresh is running or due (not yet failing): a bounded wait
        // beats an immediate "unavailable". A failing one answers at once.
        let awaitingToken = !servable && (snapshot.refreshing || snapshot.failures == 0)
        if snapshot.condition == .active && (wantsRefresh || awaitingToken) {
            if let outcome = await waitForRefresh(name, force: false, minimumTTL: Double(minimumTTL ?? 0), urgent: admin) {
                snapshot = Self.snapshot(of: outcome) ?? backend.cache.snapshot(name) ?? snapshot
            } else {
                snapshot = backend.cache.snapshot(name) ?? snapshot
            }
        }
        return tokenReply(snapshot, peer: peer, verb: verb)
    }

    /// `OK <token> <expires_in> <type> [stale=1]`, or why there is none.
    package func tokenReply(_ snapshot: TokenSnapshot, peer: PeerCredentials, verb: String, at time: Date? = nil) -> Reply {
        let time = time ?? now()
        if let token = snapshot.servableToken(at: time) {
            // A token or type that is not one printable word would be
            // refused when the line is written (Reply.line): say so here,
            // so the audit log and the metrics do not count it as served.
            guard Reply.isWord(token.exposedValue), Reply.isWord(snapshot.tokenType) else {
                audit?.record(peer: peer, verb: verb, identity: snapshot.name, result: "internal")
                return .error(.internal, Reply.unprintableField)
            }
            audit?.record(peer: peer, verb: verb, identity: snapshot.name, result: "ok", token: token)
            var fields = [token.exposedValue, "\(snapshot.expiresIn(at: time))", snapshot.tokenType]
            if snapshot.isStale(at: time) { fields.append("stale=1") }
            return .ok(fields)
        }
        switch snapshot.condition {
        case .reauthRequired:
            audit?.record(peer: peer, verb: verb, identity: snapshot.name, result: "reauth_required")
            return .error(.reauthRequired, "the provider rejected the grant of \(snapshot.name); re-enroll it")
        case .corrupt:
            audit?.record(peer: peer, verb: verb, identity: snapshot.name, result: "internal")
            return .error(.internal, "the vault values of \(snapshot.name) do not decrypt; re-enroll it")
        case .active:
            let retryAfter = max(1, WholeSeconds.clamped(snapshot.retryAt?.timeIntervalSince(time) ?? 1, .up))
            audit?.record(peer: peer, verb: verb, identity: snapshot.name, result: "unavailable")
            let why = snapshot.lastError.map { "refresh failing (\($0))" }
                ?? (snapshot.accessToken == nil ? "no token yet" : "token expired, refreshing")
            return .error(.unavailable, "no valid token for \(snapshot.name): \(why)", fields: ["retry_after=\(retryAfter)"])
        }
    }

    /// A reader's `min_ttl`, capped at half the token's lifetime: more could
    /// never be satisfied for long, and would turn every `GET` into a
    /// refresh. (The engine's minimum interval bounds the rest.)
    static func readerMinimumTTL(_ asked: Int, _ snapshot: TokenSnapshot) -> Int {
        guard let issued = snapshot.issuedAt, let expires = snapshot.expiresAt else { return asked }
        let half = max(0, expires.timeIntervalSince(issued) / 2)
        return min(asked, WholeSeconds.clamped(half))
    }

    /// Waits at most `refreshWait` for the refresh; nil on timeout.
    private func waitForRefresh(
        _ name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool
    ) async -> RefreshOutcome? {
        let backend = backend
        let wait = refreshWait
        return await withTaskGroup(of: RefreshOutcome?.self) { group in
            group.addTask { await backend.refresh(name, force: force, minimumTTL: minimumTTL, urgent: urgent) }
            group.addTask {
                try? await Task.sleep(for: wait)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// `ok`, `stale`, or the error code: the label of GET metrics.
    static func result(of reply: Reply) -> String {
        switch reply {
        // `stale=1` can only be the last field (see tokenReply).
        case .ok(let fields): fields.count > 3 && fields.last == "stale=1" ? "stale" : "ok"
        case .error(let code, _, _): code.rawValue
        }
    }

    static func snapshot(of outcome: RefreshOutcome) -> TokenSnapshot? {
        switch outcome {
        case .refreshed(let snapshot): snapshot
        case .failed(let snapshot, _, _, _): snapshot
        case .reauthRequired(let snapshot): snapshot
        case .notFound: nil
        }
    }

    private func status(_ name: IdentityName, peer: PeerCredentials) async -> Reply {
        let snapshot: TokenSnapshot
        switch readable(name, peer: peer, verb: "STATUS") {
        case .denied(let reply): return reply
        case .granted(let found): snapshot = found
        }
        let time = now()
        var fields = [
            "state=\(snapshot.state(at: time).rawValue)", "expires_in=\(snapshot.expiresIn(at: time))",
            "refresh_in=\(WholeSeconds.clamped(snapshot.nextRefresh?.timeIntervalSince(time) ?? 0, .up))",
            "failures=\(snapshot.failures)", "provider=\(snapshot.provider)", "generation=\(snapshot.generation)",
        ]
        if let error = snapshot.lastError { fields.append("last_error=\(error)") }
        if let group = snapshot.sessionGroup {
            // The session's reference (never its id) and how many identities
            // share it; their names only to admins (readers may not know them).
            let members = await backend.sessionMembers(group)
            fields.append("session=\(group)")
            fields.append("session_identities=\(members.count)")
            if policy.isAdmin(peer) { fields.append("session_with=\(members.map(\.rawValue).joined(separator: ","))") }
        }
        audit?.record(peer: peer, verb: "STATUS", identity: name, result: "ok")
        return .ok(fields)
    }

    private func refresh(_ name: IdentityName, peer: PeerCredentials) async -> Reply {
        guard backend.cache.snapshot(name) != nil else { return .error(.notFound, "no identity \(name)") }
        let outcome = await waitForRefresh(name, force: true, minimumTTL: 0, urgent: true)
        guard let current = outcome.flatMap(Self.snapshot(of:)) ?? backend.cache.snapshot(name) else {
            return .error(.notFound, "no identity \(name)")
        }
        if case .failed(_, let code, let message, _)? = outcome, current.servableToken(at: now()) != nil {
            logger.info("forced refresh failed", metadata: ["tokend.identity": "\(name)", "tokend.error": "\(code): \(message)"])
        }
        return tokenReply(current, peer: peer, verb: "REFRESH")
    }

    private func enroll(_ request: EnrollRequest, peer: PeerCredentials) async -> Reply {
        do {
            let generation = try await backend.enroll(request)
            audit?.record(peer: peer, verb: "ENROLL", identity: request.name, result: "ok")
            logger.info("identity enrolled", metadata: ["tokend.identity": "\(request.name)", "tokend.peer.uid": "\(peer.uid)"])
            return .ok(["enrolled", "generation=\(generation)"])
        } catch {
            audit?.record(peer: peer, verb: "ENROLL", identity: request.name, result: error.code.rawValue)
            return .error(error.code, error.message)
        }
    }

    private func remove(_ name: IdentityName, logout: Logout, peer: PeerCredentials) async -> Reply {
        do {
            guard try await backend.remove(name, logout: logout) else { return .error(.notFound, "no identity \(name)") }
            audit?.record(peer: peer, verb: "REMOVE", identity: name, result: "ok")
            logger.info("identity removed", metadata: ["tokend.identity": "\(name)", "tokend.peer.uid": "\(peer.uid)"])
            return .ok(["removed"])
        } catch {
            audit?.record(peer: peer, verb: "REMOVE", identity: name, result: error.code.rawValue)
            return .error(error.code, error.message)
        }
    }

    private func reload(peer: PeerCredentials) async -> Reply {
        do {
            let count = try await backend.reload()
            return .ok(["reloaded", "identities=\(count)"])
        } catch {
            return .error(error.code, error.message)
        }
    }
}
