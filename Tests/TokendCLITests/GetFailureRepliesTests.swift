import Foundation
import GRDB
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// GET's failure replies as docs/PROTOCOL.md ("GET") promises them, over the
/// real socket of the real agent, with a real OAuth2 token endpoint on
/// loopback that fails in the way each case needs; and the exit codes the
/// client command gives for them (docs/operations.md, "Exit codes").
@Suite("GET failure replies over the socket", .serialized)
final class GetFailureRepliesTests {
    let sandbox: AgentSandbox

    init() throws {
        sandbox = try AgentSandbox("getfail")
    }

    /// A valid token imported with the identity (no provider call needed).
    func identity(_ name: String, refreshToken: String, token: String? = nil, expiresIn: Int = 3600) -> String {
        var fields: [String: Any] = ["name": name, "provider": "oauth", "refresh_token": refreshToken]
        if let token {
            fields["access_token"] = token
            fields["expires_in"] = expiresIn
        }
        return importLine(fields)
    }

    func prepare(_ endpoint: ScriptedTokenEndpoint, _ lines: [String], refreshWait: Int = 1) async throws {
        sandbox.writeConfig(socketExtra: "refresh_wait = \(refreshWait)", sandbox.oauthProvider(endpoint))
        try await sandbox.initVault()
        let imported = try await sandbox.importLines(lines)
        try #require(imported.status == 0, "\(imported.stderr)")
    }

    /// A provider answering 503 with `Retry-After: 120` to an identity with
    /// no token: `ERR unavailable ... retry_after=<s>` with `<s>` the planned
    /// retry (the provider's 120 s, counted down), and exit 12 from `tokend get`.
    @Test func noTokenAndAFailingRefreshIsUnavailableWithRetryAfter() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        // The failing refresh answers at once, however slow the machine:
        // the wait only has to cover it.
        try await prepare(endpoint, [identity("down", refreshToken: "rt-down-1")], refreshWait: 20)
        let agent = try await sandbox.startAgent()

        // The first refresh is queued at start; GET waits for it (bounded),
        // then answers with the failure.
        let reply = try #require(try await sandbox.ask("GET down"), "\(agent.output)")
        let match = try #require(
            reply.wholeMatch(of: #/ERR unavailable no valid token for down: refresh failing \(transient\) retry_after=(\d+)/#),
            "\(reply)")
        let retryAfter = try #require(Int(match.1))
        // Retry-After: 120 is honoured: the next attempt is about 120 s away
        // (a few seconds may have passed since the failure).
        #expect((100...120).contains(retryAfter), "\(reply)")
        #expect(endpoint.requests("rt-down-1") == 1, "a failing refresh answers at once; GET does not retry it")

        // Once failing, GET answers at once and the same way.
        let again = try #require(try await sandbox.ask("GET down"))
        #expect(again.hasPrefix("ERR unavailable no valid token for down: refresh failing (transient) retry_after="), "\(again)")
        #expect(endpoint.requests("rt-down-1") == 1)

        let status = try #require(try await sandbox.ask("STATUS down"))
        #expect(status.hasPrefix("OK state=expired "), "\(status)")
        #expect(status.contains(" failures=1 ") && status.hasSuffix(" last_error=transient"), "\(status)")

        let command = try await CommandRunner.tokend(["get", "down", "--socket", sandbox.socket])
        #expect(command.status == 12, "exit 12 is unavailable: \(command.status) \(command.stderr)")
        #expect(command.stderr.contains("unavailable"), "\(command.stderr)")
        #expect(command.stdout.isEmpty)

        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }

    /// A refresh slower than `[socket] refresh_wait` (1 s here; the provider
    /// has not answered when the reply comes): `GET min_ttl=` gets the
    /// current, still valid token, and an identity with no token yet gets
    /// `ERR unavailable ... no token yet retry_after=1`.
    @Test func aRefreshSlowerThanRefreshWaitIsNotWaitedFor() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepare(endpoint, [
            identity("slow", refreshToken: "rt-slow-a", token: "at-slow-0"),
            identity("slow-new", refreshToken: "rt-slow-b"),
        ])
        let agent = try await sandbox.startAgent()

        // Admins' min_ttl is not capped: more than the token's lifetime
        // forces a refresh, which the endpoint holds.
        let reply = try #require(try await sandbox.ask("GET slow min_ttl=4000"), "\(agent.output)")
        #expect(await eventually { endpoint.requests("rt-slow-a") == 1 }, "the refresh was started")
        #expect(endpoint.answered("rt-slow-a") == 0, "and the reply did not wait for it")
        let fields = reply.split(separator: " ")
        #expect(fields.count == 4 && fields[0] == "OK" && fields[1] == "at-slow-0" && fields[3] == "Bearer", "\(reply)")
        #expect((3500...3600).contains(Int(fields.count > 2 ? fields[2] : "") ?? -1), "\(reply)")

        // No token yet, first refresh held: a bounded wait, then unavailable.
        #expect(await eventually { endpoint.requests("rt-slow-b") == 1 }, "\(agent.output)")
        let waiting = try #require(try await sandbox.ask("GET slow-new"))
        #expect(endpoint.answered("rt-slow-b") == 0)
        #expect(waiting == "ERR unavailable no valid token for slow-new: no token yet retry_after=1", "\(waiting)")

        // Once the provider answers, the tokens it issued are served.
        endpoint.release()
        let sandbox = sandbox
        let refreshed = await eventually {
            (try? await sandbox.ask("GET slow-new"))?.hasPrefix("OK at-rt-slow-b-") == true
        }
        #expect(refreshed, "\(agent.output)")
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }

    /// A refresh that fails while the token is still valid: `REFRESH` and
    /// then `GET` (answered on the fast path) serve that token with
    /// `stale=1`; `tokend get --format json` says `"stale": true`.
    @Test func aValidTokenWhoseRefreshFailsIsServedStale() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepare(endpoint, [identity("stale", refreshToken: "rt-down-2", token: "at-stale-0")])
        let agent = try await sandbox.startAgent()

        let fresh = try #require(try await sandbox.ask("GET stale"), "\(agent.output)")
        #expect(fresh.hasPrefix("OK at-stale-0 ") && !fresh.contains("stale=1"), "\(fresh)")

        let forced = try #require(try await sandbox.ask("REFRESH stale"))
        #expect(forced.wholeMatch(of: #/OK at-stale-0 \d+ Bearer stale=1/#) != nil, "\(forced)")
        #expect(endpoint.requests("rt-down-2") == 1)
        let served = try #require(try await sandbox.ask("GET stale"))
        #expect(served.wholeMatch(of: #/OK at-stale-0 \d+ Bearer stale=1/#) != nil, "\(served)")
        let status = try #require(try await sandbox.ask("STATUS stale"))
        #expect(status.hasPrefix("OK state=stale "), "\(status)")

        let json = try await CommandRunner.tokend(["get", "stale", "--socket", sandbox.socket, "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["stale"] as? Bool == true, "\(json.stdout)")
        #expect(object?["access_token"] as? String == "at-stale-0")

        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }

    /// The provider rejects the grant (`invalid_grant`, no session to fall
    /// back on): the identity is `reauth_required`, its token is served with
    /// `stale=1` until it expires, then `ERR reauth_required` (exit 13).
    @Test func aReauthRequiredTokenIsServedUntilItExpires() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        // Long enough to be valid when the agent is up, short enough to
        // await its expiry.
        try await prepare(endpoint, [identity("dead", refreshToken: "rt-dead-1", token: "at-dead-0", expiresIn: 40)])
        let agent = try await sandbox.startAgent()

        let forced = try #require(try await sandbox.ask("REFRESH dead"), "\(agent.output)")
        #expect(forced.wholeMatch(of: #/OK at-dead-0 \d+ Bearer stale=1/#) != nil, "\(forced)")
        let status = try #require(try await sandbox.ask("STATUS dead"))
        #expect(status.hasPrefix("OK state=reauth_required "), "\(status)")
        let served = try #require(try await sandbox.ask("GET dead"))
        #expect(served.wholeMatch(of: #/OK at-dead-0 \d+ Bearer stale=1/#) != nil, "\(served)")

        // The token's expiry is the event awaited; every answer until then
        // is the stale token, and the first one after is reauth_required.
        let transcript = Transcript()
        let sandbox = sandbox
        let expired = await eventually(timeout: .seconds(90)) {
            let answer = (try? await sandbox.ask("GET dead")) ?? "no reply"
            transcript.append(answer)
            return answer.hasPrefix("ERR ")
        }
        let answers = transcript.lines
        #expect(expired, "\(answers.suffix(3))")
        #expect(answers.last == "ERR reauth_required the provider rejected the grant of dead; re-enroll it", "\(answers.last ?? "")")
        for answer in answers.dropLast() {
            #expect(answer.wholeMatch(of: #/OK at-dead-0 \d+ Bearer stale=1/#) != nil, "\(answer)")
        }

        let command = try await CommandRunner.tokend(["get", "dead", "--socket", sandbox.socket])
        #expect(command.status == 13, "exit 13 is reauth_required: \(command.status) \(command.stderr)")
        #expect(command.stderr.contains("reauth_required"), "\(command.stderr)")
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }

    /// An identity whose vault value no longer decrypts (one byte flipped in
    /// the file): `ERR internal`, state `corrupt`, exit 16, and the other
    /// identities are served as before.
    @Test func aCorruptIdentityIsInternalAndOnlyThatOne() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepare(endpoint, [
            identity("broken", refreshToken: "rt-ok-1", token: "at-broken-0"),
            identity("intact", refreshToken: "rt-ok-2", token: "at-intact-0"),
        ])
        let queue = try DatabaseQueue(path: sandbox.directory + "/vault.db")
        try await queue.write { db in
            var sealed = try #require(try Data.fetchOne(db, sql: "SELECT access_token FROM identities WHERE name = 'broken'"))
            sealed[sealed.count - 20] ^= 0x01
            try db.execute(sql: "UPDATE identities SET access_token = ? WHERE name = 'broken'", arguments: [sealed])
        }
        try queue.close()
        let agent = try await sandbox.startAgent()

        let reply = try #require(try await sandbox.ask("GET broken"), "\(agent.output)")
        #expect(reply == "ERR internal the vault values of broken do not decrypt; re-enroll it", "\(reply)")
        let status = try #require(try await sandbox.ask("STATUS broken"))
        #expect(status.hasPrefix("OK state=corrupt ") && status.hasSuffix("last_error=corrupt"), "\(status)")
        let intact = try #require(try await sandbox.ask("GET intact"))
        #expect(intact.hasPrefix("OK at-intact-0 "), "\(intact)")
        #expect(endpoint.requests("rt-ok-1") == 0, "a corrupt identity is never refreshed with garbage")

        let command = try await CommandRunner.tokend(["get", "broken", "--socket", sandbox.socket])
        #expect(command.status == 16, "internal is 'any other protocol error': \(command.status) \(command.stderr)")
        #expect(command.stderr.contains("internal"), "\(command.stderr)")
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }
}
