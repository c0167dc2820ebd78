import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Runs `tokend` as another user (uid and gid 65534, `nobody`/`nogroup`,
/// or the groups given), via `setpriv`. Needs root.
func tokendAs(gid: UInt32 = 65534, _ arguments: [String]) async throws -> CommandRunner.Result {
    try await CommandRunner.run(
        "/usr/bin/setpriv", ["--reuid=65534", "--regid=\(gid)", "--clear-groups", CommandRunner.tokendPath] + arguments)
}

/// Requires root, loudly: these tests act as other users, and CI runs as root.
func requireRoot() throws {
    try #require(geteuid() == 0, "this test acts as other users (setpriv); run it as root, as CI does")
}

/// `[socket] mode` and `group` as docs/configuration.md describes them, and
/// what a peer outside the allow rules gets (exit 11), with real users.
@Suite("socket group, mode and non-admin peers (root only)", .serialized)
final class SocketAccessTests {
    let sandbox: AgentSandbox

    init() throws {
        sandbox = try AgentSandbox("access")
    }

    @Test func theSocketHasItsConfiguredGroupAndModeAndOnlyThatGroupConnects() async throws {
        try requireRoot()
        let endpoint = try await ScriptedTokenEndpoint.start()
        sandbox.writeConfig(socketExtra: "mode = \"0660\"\ngroup = \"nogroup\"", sandbox.oauthProvider(endpoint))
        try await sandbox.initVault()
        let imported = try await sandbox.importLines([
            importLine(["name": "private", "provider": "oauth", "refresh_token": "rt-ok-1", "access_token": "at-private-0", "expires_in": 3600]),
            importLine([
                "name": "shared", "provider": "oauth", "refresh_token": "rt-ok-2", "access_token": "at-shared-0", "expires_in": 3600,
                "allow": ["uid:65534"],
            ]),
        ])
        try #require(imported.status == 0, "\(imported.stderr)")
        let agent = try await sandbox.startAgent()

        var info = stat()
        try #require(lstat(sandbox.socket, &info) == 0)
        let nogroup = try #require(getgrnam("nogroup")?.pointee.gr_gid)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_gid == nogroup, "the socket's group is [socket] group")
        #expect(info.st_mode & 0o7777 == 0o660, "the socket's mode is [socket] mode: \(String(info.st_mode & 0o7777, radix: 8))")
        #expect(info.st_uid == 0, "owned by the agent's user")

        // A member of the group connects and gets what its rules allow.
        let shared = try await tokendAs(["get", "shared", "--socket", sandbox.socket])
        #expect(shared.status == 0 && shared.stdout == "at-shared-0\n", "\(shared.status) \(shared.stderr)")
        // 11: a peer outside the identity's rules, or using an admin verb.
        let denied = try await tokendAs(["get", "private", "--socket", sandbox.socket])
        #expect(denied.status == 11, "\(denied.status) \(denied.stderr)")
        #expect(denied.stderr.contains("forbidden") && denied.stderr.contains("uid 65534"), "\(denied.stderr)")
        #expect(denied.stdout.isEmpty)
        let probe = try await tokendAs(["get", "no-such-identity", "--socket", sandbox.socket])
        #expect(probe.status == 11, "an unknown name looks forbidden to non-admins: \(probe.status) \(probe.stderr)")
        let stats = try await tokendAs(["stats", "--socket", sandbox.socket])
        #expect(stats.status == 11, "\(stats.status) \(stats.stderr)")
        #expect(stats.stderr.contains("admin verb"), "\(stats.stderr)")

        // The same user outside the group cannot even connect (mode 0660).
        let outsider = try await tokendAs(gid: 4_000_123, ["get", "shared", "--socket", sandbox.socket])
        #expect(outsider.status == 14, "\(outsider.status) \(outsider.stderr)")
        #expect(outsider.stderr.contains("Permission denied"), "\(outsider.stderr)")

        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        await endpoint.shutdown()
    }
}
