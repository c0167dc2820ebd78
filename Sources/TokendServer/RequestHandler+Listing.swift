import Foundation
import Synchronization
import TokendCache
import TokendCore
import TokendProtocol

/// `LIST` and `STATS`: the verbs that look at many identities at once.
extension RequestHandler {
    /// At most `limit` names, from looking at no more than ``listBudget``
    /// identities: a peer that may read few of many gets short pages with
    /// a `next=` to go on from, never one request that scans them all.
    func list(prefix: String?, after: IdentityName?, limit: Int?, peer: PeerCredentials) -> Reply {
        let limit = min(max(limit ?? 100, 1), Self.listBudget)
        let admin = policy.isAdmin(peer)
        var start = after
        if !admin, let after, after.rawValue.hasPrefix(ListCursors.prefix) {
            guard let resolved = listCursors.resolve(after.rawValue) else {
                return .error(.badRequest, "unknown or expired LIST cursor; start again without after=")
            }
            start = resolved
        }
        let page = backend.cache.page(prefix: prefix, after: start, limit: limit, budget: Self.listBudget) { snapshot in
            admin || policy.mayRead(snapshot.allowRules, peer: peer)
        }
        var fields = ["\(page.names.count)"] + page.names.map(\.rawValue)
        if let next = page.next {
            // A reader learns only names it may read: where the scan stopped
            // on another name, it gets an opaque cursor instead.
            let cursor = admin || next == page.names.last ? next.rawValue : listCursors.issue(next)
            fields.append("next=\(cursor)")
        }
        return .ok(fields)
    }

    /// Identities one `LIST` request may look at.
    static let listBudget = 1000

    func stats() async -> Reply {
        let counts = backend.cache.counts(at: now())
        let engine = await backend.statistics()
        // `fresh` counts refreshes in flight, even an identity's first one or
        // a retry after failures; a health probe needs to tell those apart:
        // `servable` (a GET would get a token now) and `failing` (its last
        // refresh failed, whatever its state now).
        return .ok([
            "identities=\(counts.total)", "fresh=\(counts[.fresh] + counts[.refreshing])",
            "stale=\(counts[.stale])", "expired=\(counts[.expired])",
            "reauth_required=\(counts[.reauthRequired])", "refreshes=\(engine.refreshes)",
            "failures=\(engine.failures)", "connections=\(connections())",
            "pending=\(counts[.pending])", "corrupt=\(counts[.corrupt])",
            "servable=\(counts.servable)", "failing=\(counts.failing)",
        ])
    }
}

/// Opaque `LIST` cursors for readers: `cursor:<random>` stands for the last
/// name a page looked at, which the reader may not be allowed to see. The
/// newest 4,096 are kept; an older one gets `bad_request` (start again).
package final class ListCursors: Sendable {
    static let prefix = "cursor:"
    static let capacity = 4096
    private let table = Mutex<(byID: [String: IdentityName], order: [String])>(([:], []))

    package init() {}

    func issue(_ name: IdentityName) -> String {
        let id = Self.prefix + (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        table.withLock { table in
            table.byID[id] = name
            table.order.append(id)
            while table.order.count > Self.capacity {
                table.byID[table.order.removeFirst()] = nil
            }
        }
        return id
    }

    func resolve(_ id: String) -> IdentityName? {
        table.withLock { $0.byID[id] }
    }
}
