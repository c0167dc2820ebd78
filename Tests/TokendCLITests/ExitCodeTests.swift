import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Exit codes of docs/operations.md ("Exit codes") that no other test
/// produces, each caused for real. (12, 13 and 16 from `tokend get` are in
/// GetFailureRepliesTests; 11 with a real non-admin peer in
/// SocketAccessTests; 6 in AgentBesideTheVaultTests.)
@Suite("exit codes of the tokend command")
final class ExitCodeTests {
    let sandbox: AgentSandbox

    init() throws {
        sandbox = try AgentSandbox("exit")
    }

    /// 7: a file that is not a tokend vault (here: text, and a SQLite
    /// database of something else); the file is left as it was.
    @Test func aFileThatIsNotAVaultExitsSeven() async throws {
        let key = sandbox.directory + "/vault.key"
        FileManager.default.createFile(
            atPath: key, contents: Data((0..<32).map { UInt8($0) }), attributes: [.posixPermissions: 0o600])
        let text = sandbox.directory + "/notes.db"
        let content = Data(String(repeating: "not a vault\n", count: 400).utf8)
        FileManager.default.createFile(atPath: text, contents: content, attributes: [.posixPermissions: 0o600])
        let result = try await CommandRunner.tokend(["vault", "info", "--vault", text, "--key-file", key])
        #expect(result.status == 7, "\(result.status) \(result.stderr)")
        #expect(FileManager.default.contents(atPath: text) == content, "the file is untouched")

        let other = sandbox.directory + "/other.db"
        let made = try await CommandRunner.run("/usr/bin/sqlite3", [other, "CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');"])
        try #require(made.status == 0, "\(made.stderr)")
        chmod(other, 0o600)
        let sqlite = try await CommandRunner.tokend(["vault", "list", "--vault", other, "--key-file", key])
        #expect(sqlite.status == 7, "\(sqlite.status) \(sqlite.stderr)")
        let rows = try await CommandRunner.run("/usr/bin/sqlite3", [other, "SELECT count(*) FROM songs; SELECT count(*) FROM sqlite_master;"])
        #expect(rows.stdout == "1\n1\n", "nothing was added to it: \(rows.stdout)")
    }

    /// 10: a provider answering 200 with something that is not a valid
    /// response (not JSON; JSON with the wrong types).
    @Test func aProviderAnsweringGarbageExitsTen() async throws {
        let fake = try await FakeTransmitServer.start()
        sandbox.writeConfig(sandbox.transmitProvider(fake))
        _ = fake.mintSession(userID: "user-1")
        let path = "/cis/v1/auth/users/user-1/sessions"
        let clean = try await CommandRunner.tokend(["transmit", "sessions", "user-1", "--config", sandbox.config])
        #expect(clean.status == 0, "the same command works against a sane answer: \(clean.stderr)")

        fake.inject(.garbage, path: path)
        let garbage = try await CommandRunner.tokend(["transmit", "sessions", "user-1", "--config", sandbox.config])
        #expect(garbage.status == 10, "\(garbage.status) \(garbage.stderr)")
        fake.inject(.wrongTypes, path: path)
        let wrongTypes = try await CommandRunner.tokend(["transmit", "sessions", "user-1", "--config", sandbox.config])
        #expect(wrongTypes.status == 10, "\(wrongTypes.status) \(wrongTypes.stderr)")
        #expect(fake.requestCount(path) == 3)
        await fake.shutdown()
    }

    /// 64: wrong command-line usage, before anything is done.
    @Test(arguments: [
        ["get"],
        ["get", "x", "--format", "yaml"],
        ["get", "x", "--min-ttl", "soon"],
        ["no-such-command"],
        ["serve", "--log-level", "loud"],
        ["enroll", "x", "--provider", "p", "--allow", "usr:billing"],
        ["remove", "x", "--logout=yes"],
    ])
    func wrongUsageExitsSixtyFour(_ arguments: [String]) async throws {
        let result = try await CommandRunner.tokend(arguments + ["--socket", sandbox.directory + "/none.sock"])
        #expect(result.status == 64, "\(arguments): \(result.status) \(result.stderr)")
        #expect(!result.stderr.isEmpty)
    }
}
