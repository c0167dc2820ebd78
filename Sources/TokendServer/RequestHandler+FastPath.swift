import Foundation
import TokendCore
import TokendProtocol

extension RequestHandler {
    /// The reply to `request` if it can be given right now without waiting
    /// (a `PING`, `HELLO`, or a `GET` whose token is valid and fresh enough),
    /// else nil. The socket server answers these on the connection's event
    /// loop, sparing the hop to the concurrency pool and back.
    package func immediateReply(_ request: Request, peer: PeerCredentials) -> Reply? {
        switch request {
        case .ping:
            return .ok(["PONG"])
        case .hello:
            return .ok(["tokend", "proto=1", "version=\(TokendVersion.current)"])
        case .get(let name, let minimumTTL):
            guard let snapshot = backend.cache.snapshot(name) else { return nil }
            let time = now()
            guard snapshot.servableToken(at: time) != nil,
                minimumTTL.map({ snapshot.expiresIn(at: time) >= $0 }) ?? true
            else { return nil }
            guard policy.mayRead(snapshot.allowRules, peer: peer) else { return nil }
            let reply = tokenReply(snapshot, peer: peer, verb: "GET", at: time)
            GetRequestMetrics.count(Self.result(of: reply))
            return reply
        default:
            return nil
        }
    }
}

extension RequestHandler {
    /// ``immediateReply(_:peer:)`` written straight into `output`, byte for
    /// byte the same line, with a `GET` built from `prepared` (the socket's
    /// front loop answers nearly every request here). False, with nothing
    /// written, when the request needs more than an immediate answer.
    func appendImmediateReply(
        _ request: Request, peer: PeerCredentials, prepared: PreparedReplies, to output: inout [UInt8]
    ) -> Bool {
        guard case .get(let name, let minimumTTL) = request,
            let entry = prepared.entry(name, in: backend.cache, admits: { policy.mayRead($0.rules, peer: peer) })
        else {
            // Not a GET, or one with no token that can be written as it is:
            // the general path says what to answer.
            guard let reply = immediateReply(request, peer: peer) else { return false }
            output.appendReply(reply)
            return true
        }
        let time = now()
        let serving = entry.serving
        guard serving.isServable(at: time) else { return false }
        let expiresIn = serving.expiresIn(at: time)
        if let minimumTTL, expiresIn < minimumTTL { return false }
        guard policy.mayRead(entry.rules, peer: peer) else { return false }
        let stale = serving.isStale(at: time)
        audit?.record(peer: peer, verb: "GET", identity: name, result: "ok", token: entry.token)
        // As tokenReply's fields: token, expires_in, type, and stale=1.
        output.append(contentsOf: entry.head)
        output.appendDecimal(expiresIn)
        output.append(contentsOf: entry.type)
        if stale { output.append(contentsOf: " stale=1".utf8) }
        output.append(UInt8(ascii: "\n"))
        GetRequestMetrics.count(stale ? "stale" : "ok")
        return true
    }
}
