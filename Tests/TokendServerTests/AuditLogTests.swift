import Foundation
import Logging
import Testing
import TokendCache
import TokendCore
import TokendProtocol
import TokendServer
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

@Suite("Audit log")
struct AuditLogTests {
    @Test func everyDecisionIsOneLineWithAFingerprintAndNeverTheToken() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("billing", allow: ["uid:4242"])
        let path = fixture.directory + "/audit.log"
        let handler = RequestHandler(
            backend: fixture.backend, policy: AccessPolicy(agentUID: 999_999), audit: try AuditLog(path: path))
        let allowed = PeerCredentials(pid: 10, uid: 4242, gid: 4242)
        let stranger = PeerCredentials(pid: 11, uid: 5555, gid: 5555)
        _ = await handler.handle(.success(.get(IdentityName("billing")!, minimumTTL: nil)), peer: allowed)
        _ = await handler.handle(.success(.get(IdentityName("billing")!, minimumTTL: nil)), peer: stranger)
        _ = await handler.handle(.success(.get(IdentityName("ghost")!, minimumTTL: nil)), peer: stranger)
        _ = await handler.handle(.success(.stats), peer: stranger)

        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4)
        // The first 4 bytes of SHA-256("at-initial-billing"), computed
        // elsewhere (`printf %s at-initial-billing | sha256sum | cut -c1-8`).
        let fingerprint = "77c8ff1e"
        #expect(AuditLog.fingerprint(Secret("at-initial-billing")) == fingerprint)
        #expect(lines[0].hasSuffix("pid=10 uid=4242 gid=4242 verb=GET identity=billing result=ok fingerprint=\(fingerprint)"))
        #expect(lines[1].hasSuffix("pid=11 uid=5555 gid=5555 verb=GET identity=billing result=forbidden"))
        #expect(lines[2].hasSuffix("verb=GET identity=ghost result=forbidden"))
        #expect(lines[3].hasSuffix("verb=STATS identity=- result=forbidden"))
        #expect(lines.allSatisfy { $0.hasPrefix("time=20") })
        #expect(!lines.contains { $0.contains("at-initial-billing") }, "the token itself is never written")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    /// A GET answered on the event loop (the fast path) is audited too,
    /// with the connecting process's real pid.
    @Test func aFastPathGetIsAuditedWithTheRealPeer() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)").path
        defer { unlink(path) }
        let fixture = try await ServerFixture(audit: try AuditLog(path: path))
        try await fixture.enroll("billing")
        let client = try fixture.client()
        #expect(try await blocking { client.request("GET billing") }?.hasPrefix("OK at-initial-billing ") == true)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.contains(" pid=\(getpid()) uid=\(getuid()) ") == true, "\(lines)")
        #expect(lines.first?.hasSuffix("verb=GET identity=billing result=ok fingerprint=77c8ff1e") == true, "\(lines)")
    }

    /// A token that is not one printable word (the provider gate lets none
    /// through; this is the last line of defence) is never sent, and is
    /// not audited or counted as served.
    @Test func aTokenThatCannotBeWrittenIsAuditedAsAnInternalError() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)").path
        defer { unlink(path) }
        let backend = FakeBackend()
        let now = Date()
        backend.cache.update(TokenSnapshot(
            name: IdentityName("spaced")!, provider: "p", allowRules: [], accessToken: Secret("at one\nOK forged"), tokenType: "Bearer",
            issuedAt: now, expiresAt: now.addingTimeInterval(600), condition: .active, refreshing: false, failures: 0,
            lastError: nil, generation: 1, nextRefresh: nil, retryAt: nil))
        let handler = RequestHandler(backend: backend, policy: AccessPolicy(agentUID: 999_999), audit: try AuditLog(path: path))
        let reply = await handler.handle(.success(.get(IdentityName("spaced")!, minimumTTL: nil)), peer: PeerCredentials(pid: 1, uid: 0, gid: 0))
        guard case .reply(let sent) = reply else {
            Issue.record("\(reply)")
            return
        }
        #expect(sent.line == "ERR internal \(Reply.unprintableField)\n")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasSuffix("verb=GET identity=spaced result=internal"), "\(lines)")
    }
}
