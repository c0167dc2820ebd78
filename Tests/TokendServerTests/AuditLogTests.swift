import Foundation
import Logging
import Testing
import TokendCore
import TokendProtocol
import TokendServer

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
        let fingerprint = AuditLog.fingerprint(Secret("at-initial-billing"))
        #expect(fingerprint.count == 8)
        #expect(lines[0].hasSuffix("pid=10 uid=4242 gid=4242 verb=GET identity=billing result=ok fingerprint=\(fingerprint)"))
        #expect(lines[1].hasSuffix("pid=11 uid=5555 gid=5555 verb=GET identity=billing result=forbidden"))
        #expect(lines[2].hasSuffix("verb=GET identity=ghost result=forbidden"))
        #expect(lines[3].hasSuffix("verb=STATS identity=- result=forbidden"))
        #expect(lines.allSatisfy { $0.hasPrefix("time=20") })
        #expect(!lines.contains { $0.contains("at-initial-billing") }, "the token itself is never written")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}
