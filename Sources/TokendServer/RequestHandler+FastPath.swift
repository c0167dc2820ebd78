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
