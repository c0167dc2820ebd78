import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The running agent and what lives beside it: the vault lock against
/// `vault import`, socket files left by a killed agent or held by a live
/// one, and reloads that keep cached tokens (docs/operations.md).
@Suite("the agent beside its vault, socket and configuration", .serialized)
final class AgentLifecycleTests {
    let sandbox: AgentSandbox

    init() throws {
        sandbox = try AgentSandbox("life")
    }

    func prepare(_ endpoint: ScriptedTokenEndpoint, identities: String = "") async throws {
        sandbox.writeConfig(sandbox.oauthProvider(endpoint) + "\n" + identities)
        try await sandbox.initVault()
        let imported = try await sandbox.importLines([
            importLine(["name": "resident", "provider": "oauth", "refresh_token": "rt-ok-1"]),
        ])
        try #require(imported.status == 0, "\(imported.stderr)")
    }

    /// `vault import` beside a running agent: exit 6 (the agent holds the
    /// writer lock), and nothing is imported.
    @Test func importBesideARunningAgentExitsSixAndImportsNothing() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepare(endpoint)
        let agent = try await sandbox.startAgent()

        let result = try await sandbox.importLines([
            importLine(["name": "newcomer", "provider": "oauth", "refresh_token": "rt-ok-NEWSECRET"]),
        ])
        #expect(result.status == 6, "\(result.status) \(result.stderr)")
        #expect(!result.stderr.contains("rt-ok-NEWSECRET"))
        let reply = try await sandbox.ask("GET newcomer")
        #expect(reply == "ERR not_found no identity newcomer", "\(reply ?? "no reply")")
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")

        let list = try await CommandRunner.tokend(["vault", "list", "--config", sandbox.config])
        #expect(list.status == 0 && list.stdout.contains("resident"), "\(list.stdout) \(list.stderr)")
        #expect(!list.stdout.contains("newcomer"), "nothing was imported: \(list.stdout)")
        await endpoint.shutdown()
    }

    /// A socket file left by a `kill -9`ed agent is removed and the next
    /// agent starts; a live agent's socket is not touched by a second agent,
    /// which refuses to start with a clear message and a non-zero exit.
    @Test func aStaleSocketIsReplacedButALiveAgentsIsNot() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        try await prepare(endpoint)
        let killed = try await sandbox.startAgent(log: "killed.log")
        await killed.kill()
        var info = stat()
        try #require(lstat(sandbox.socket, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK, "the killed agent left its socket")
        #expect(try await CommandRunner.tokend(["get", "resident", "--socket", sandbox.socket]).status == 14, "nobody answers there")

        let agent = try await sandbox.startAgent()
        let token = try await CommandRunner.tokend(["get", "resident", "--socket", sandbox.socket])
        #expect(token.status == 0 && token.stdout.hasPrefix("at-rt-ok-1-"), "\(token.stderr) \(agent.output)")
        try #require(lstat(sandbox.socket, &info) == 0)
        let liveInode = info.st_ino

        // A second agent with a vault of its own, configured on the same socket.
        let original = try String(contentsOfFile: sandbox.config, encoding: .utf8)
        let second = sandbox.directory + "/second.toml"
        try original.replacingOccurrences(of: "/vault.db", with: "/second.db").replacingOccurrences(of: "/vault.key", with: "/second.key")
            .write(toFile: second, atomically: true, encoding: .utf8)
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", second]).status == 0)
        let intruder = try ChildProcess(
            CommandRunner.tokendPath, ["serve", "--config", second], output: sandbox.directory + "/second.log")
        let exit = await intruder.wait(timeout: .seconds(60))
        if exit == nil { await intruder.kill() }
        #expect(exit == 70, "the second agent refuses to start (70: 'any other failure'): \(String(describing: exit))")
        #expect(intruder.output.contains("another agent is already listening on \(sandbox.socket)"), "\(intruder.output)")

        try #require(lstat(sandbox.socket, &info) == 0)
        #expect(info.st_ino == liveInode, "the live agent's socket file was not replaced")
        let still = try await CommandRunner.tokend(["get", "resident", "--socket", sandbox.socket])
        #expect(still.stdout == token.stdout, "the first agent still answers with its token")
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }

    /// The token of an `OK <token> <expires_in> <type>` reply.
    static func token(_ reply: String) -> String? {
        let fields = reply.split(separator: " ")
        return fields.count >= 4 && fields[0] == "OK" ? String(fields[1]) : nil
    }

    /// SIGHUP re-reads the file (here with changes in it) and keeps every
    /// cached token: the same tokens before and after, no provider call.
    @Test func aReloadKeepsTheCachedTokensWithoutCallingTheProvider() async throws {
        let endpoint = try await ScriptedTokenEndpoint.start()
        let declared = "[identities.declared]\nprovider = \"oauth\"\ngrant = \"client_credentials\"\n"
        try await prepare(endpoint, identities: declared)
        let agent = try await sandbox.startAgent()

        let before = try #require(try await sandbox.ask("GET declared"), "\(agent.output)")
        let residentBefore = try #require(try await sandbox.ask("GET resident"))
        #expect(before.hasPrefix("OK at-client_credentials-"), "\(before)")
        #expect(residentBefore.hasPrefix("OK at-rt-ok-1-"), "\(residentBefore)")
        let calls = endpoint.totalRequests
        #expect(calls == 2)

        // The change: new admins, and new allow rules for the declared
        // identity (which makes the reload update it in the vault and engine).
        sandbox.writeConfig(sandbox.oauthProvider(endpoint) + "\n" + declared + "allow = [\"uid:4242\"]\n\n[admins]\nuids = [4242]\n")
        agent.signal(SIGHUP)
        #expect(await eventually { agent.output.contains("configuration reloaded") }, "\(agent.output)")
        let reloaded = try await CommandRunner.tokend(["reload", "--socket", sandbox.socket])
        #expect(reloaded.stdout == "reloaded identities=2\n", "\(reloaded.stdout) \(reloaded.stderr)")

        let after = try #require(try await sandbox.ask("GET declared"))
        let residentAfter = try #require(try await sandbox.ask("GET resident"))
        #expect(Self.token(after) == Self.token(before), "\(before) then \(after)")
        #expect(Self.token(residentAfter) == Self.token(residentBefore), "\(residentBefore) then \(residentAfter)")
        #expect(endpoint.totalRequests == calls, "no provider call for a reload")
        // Nor one queued for later: both keep their planned refresh, about
        // 2/3 of the hour away (a queued one would show refresh_in=0 or a
        // state other than fresh).
        for name in ["declared", "resident"] {
            let status = try #require(try await sandbox.ask("STATUS \(name)"))
            let refreshIn = status.firstMatch(of: #/ refresh_in=(\d+) /#).flatMap { Int($0.1) } ?? 0
            #expect(status.hasPrefix("OK state=fresh ") && refreshIn > 600, "\(status)")
        }
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }
}
