import Foundation
import TokendCache
import TokendCore
import TokendServer

/// What the in-process request handler suites share: a fixed clock, three
/// peers (a reader the default rules allow, a stranger, root as admin), a
/// handler over a ``FakeBackend`` and a snapshot maker.
enum InProcess {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let reader = PeerCredentials(pid: 10, uid: 4242, gid: 4242)
    static let stranger = PeerCredentials(pid: 11, uid: 5555, gid: 5555)
    static let admin = PeerCredentials(pid: 12, uid: 0, gid: 0)

    static func handler(_ backend: FakeBackend, refreshWait: Duration = .seconds(5)) -> RequestHandler {
        RequestHandler(
            backend: backend, policy: AccessPolicy(admins: .init(uids: [0]), agentUID: 999_999), refreshWait: refreshWait,
            now: { now })
    }

    static func snapshot(
        _ name: String, token: String? = "at-1", type: String = "Bearer", expiresIn: Double = 600,
        allow: [String] = ["uid:4242"], failures: Int = 0, condition: TokenSnapshot.Condition = .active,
        session: String? = nil
    ) -> TokenSnapshot {
        TokenSnapshot(
            name: IdentityName(name)!, provider: "p", allowRules: allow, accessToken: token.map(Secret.init), tokenType: type,
            issuedAt: now.addingTimeInterval(-60), expiresAt: token.map { _ in now.addingTimeInterval(expiresIn) },
            condition: condition, refreshing: false, failures: failures, lastError: failures > 0 ? "transient" : nil,
            generation: 1, nextRefresh: nil, retryAt: nil, sessionGroup: session)
    }
}
