import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The audit log of docs/operations.md ("Audit log") through `[audit] path`
/// in a running agent: the peers are child processes whose pids the test
/// knows, and the fingerprint is computed here with coreutils' `sha256sum`,
/// not with the agent's own function.
@Suite("audit log of a running agent (root only)", .serialized)
final class AuditLogEndToEndTests {
    let sandbox: AgentSandbox
    var auditPath: String { sandbox.directory + "/audit/access.log" }

    init() throws {
        sandbox = try AgentSandbox("audit")
        try FileManager.default.createDirectory(atPath: sandbox.directory + "/audit", withIntermediateDirectories: true)
    }

    /// Runs a `tokend` client as a child process; returns its pid and output.
    func client(_ arguments: [String], asNobody: Bool = false) async throws -> (pid: pid_t, status: Int32?, output: String) {
        let output = sandbox.directory + "/client-\(UUID().uuidString.prefix(8)).out"
        let child = asNobody
            ? try ChildProcess(
                "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", CommandRunner.tokendPath] + arguments,
                output: output)
            : try ChildProcess(CommandRunner.tokendPath, arguments, output: output)
        // setpriv execs tokend in place, so the pid is the peer's pid.
        let status = await child.wait(timeout: .seconds(30))
        return (child.pid, status, child.output)
    }

    /// The first 8 hex digits of SHA-256 of `token`, fed on stdin (never argv).
    func fingerprint(_ token: String) async throws -> String {
        let result = try await CommandRunner.run("/usr/bin/sha256sum", [], stdin: Data(token.utf8))
        return String(result.stdout.prefix(8))
    }

    struct Line {
        var pid: String, uid: String, gid: String, verb: String, identity: String, result: String, fingerprint: String?
    }

    func auditLines() -> [Line] {
        let text = (try? String(contentsOfFile: auditPath, encoding: .utf8)) ?? ""
        let format = #/time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pid=(\d+) uid=(\d+) gid=(\d+) verb=([A-Z]+) identity=(\S+) result=([a-z_]+)(?: fingerprint=([0-9a-f]{8}))?/#
        return text.split(separator: "\n").map { raw in
            guard let match = String(raw).wholeMatch(of: format) else {
                Issue.record("audit line not in the documented format: \(raw)")
                return Line(pid: "", uid: "", gid: "", verb: "", identity: "", result: "", fingerprint: nil)
            }
            return Line(
                pid: String(match.1), uid: String(match.2), gid: String(match.3), verb: String(match.4),
                identity: String(match.5), result: String(match.6), fingerprint: match.7.map(String.init))
        }
    }

    @Test func everyDecisionIsLoggedWithThePeersPidAndAnIndependentFingerprint() async throws {
        try requireRoot()
        let endpoint = try await ScriptedTokenEndpoint.start()
        sandbox.writeConfig(
            socketExtra: "group = \"nogroup\"", sandbox.oauthProvider(endpoint) + "\n\n[audit]\npath = \"\(auditPath)\"\n")
        try await sandbox.initVault()
        let token = "at-audited-\(UUID().uuidString.prefix(12))"
        let imported = try await sandbox.importLines([
            importLine(["name": "audited", "provider": "oauth", "refresh_token": "rt-ok-1", "access_token": token, "expires_in": 3600]),
        ])
        try #require(imported.status == 0, "\(imported.stderr)")
        let agent = try await sandbox.startAgent()

        // A plain GET of a valid token: answered on the event-loop fast path.
        let reader = try await client(["get", "audited", "--socket", sandbox.socket])
        #expect(reader.status == 0 && reader.output == token + "\n", "\(reader)")
        let stranger = try await client(["get", "audited", "--socket", sandbox.socket], asNobody: true)
        #expect(stranger.status == 11, "\(stranger)")
        let status = try await client(["status", "audited", "--socket", sandbox.socket])
        #expect(status.status == 0, "\(status)")

        // Lines are written as decisions are made; they are all there once
        // the three clients have exited.
        let expected = try await fingerprint(token)
        #expect(expected.count == 8)
        let lines = auditLines()
        let readerLines = lines.filter { $0.pid == "\(reader.pid)" }
        #expect(readerLines.count == 1, "one line per decision: \(lines)")
        if let line = readerLines.first {
            #expect(line.uid == "0" && line.gid == "0" && line.verb == "GET" && line.identity == "audited" && line.result == "ok")
            #expect(line.fingerprint == expected, "fingerprint \(line.fingerprint ?? "none"), sha256sum says \(expected)")
        }
        let strangerLines = lines.filter { $0.pid == "\(stranger.pid)" }
        #expect(strangerLines.count == 1, "\(lines)")
        if let line = strangerLines.first {
            #expect(line.uid == "65534" && line.gid == "65534" && line.verb == "GET" && line.result == "forbidden")
            #expect(line.fingerprint == nil, "no token, no fingerprint")
        }
        let statusLines = lines.filter { $0.pid == "\(status.pid)" }
        #expect(statusLines.map(\.verb) == ["STATUS"] && statusLines.first?.fingerprint == nil, "\(lines)")

        let text = try String(contentsOfFile: auditPath, encoding: .utf8)
        #expect(!text.contains(token), "never the token")
        #expect(!text.contains("rt-ok-1"), "never the refresh token")
        var info = stat()
        #expect(stat(auditPath, &info) == 0 && info.st_mode & 0o777 == 0o600, "created mode 0600")

        // Rotation as logrotate does it without copytruncate: move the
        // file away, then reload; the next lines go to a new file.
        let rotated = auditPath + ".1"
        #expect(rename(auditPath, rotated) == 0)
        let reload = try await CommandRunner.tokend(["reload", "--socket", sandbox.socket])
        #expect(reload.status == 0, "\(reload.stderr)")
        let after = try await client(["get", "audited", "--socket", sandbox.socket])
        #expect(after.status == 0, "\(after)")
        let fresh = auditLines()
        #expect(fresh.map(\.pid) == ["\(after.pid)"], "a new file after the reload: \(fresh)")
        let old = try String(contentsOfFile: rotated, encoding: .utf8)
        #expect(!old.contains("pid=\(after.pid) "), "nothing more into the moved file")
        #expect(stat(auditPath, &info) == 0 && info.st_mode & 0o777 == 0o600, "the new file is mode 0600 too")

        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }
}
