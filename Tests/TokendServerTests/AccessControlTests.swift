import Foundation
import Testing
import TokendCore
import TokendServer
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Access control with real users and groups: the tests create them
/// (`useradd`, `groupadd`; they run as root) and connect as them with
/// `setpriv` and `socat`, as a worker on the host would.
@Suite("Access control with real users", .enabled(if: getuid() == 0, "creating users needs root"), .serialized)
struct AccessControlTests {
    static let userA = "tokend-acl-a"
    static let userB = "tokend-acl-b"
    static let group = "tokend-acl-g"
    static let adminGroup = "tokend-acl-admins"

    /// Creates the test accounts once (idempotent across runs).
    static func ensureAccounts() throws {
        for group in [group, adminGroup] where AccessControlTests.run(["/usr/bin/getent", "group", group]).status != 0 {
            #expect(run(["/usr/sbin/groupadd", group]).status == 0)
        }
        for user in [userA, userB] where run(["/usr/bin/id", "-u", user]).status != 0 {
            #expect(run(["/usr/sbin/useradd", "-M", "-s", "/usr/sbin/nologin", user]).status == 0)
        }
        // B is in the group only as a supplementary member; A is an admin by group.
        _ = run(["/usr/sbin/usermod", "-a", "-G", group, userB])
        _ = run(["/usr/sbin/usermod", "-a", "-G", adminGroup, userA])
    }

    static func uid(_ user: String) -> String {
        run(["/usr/bin/id", "-u", user]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Sends `lines` as `user` through socat; returns the reply lines.
    static func ask(as user: String, path: String, _ lines: String) -> [String] {
        let result = run(
            ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "/usr/bin/socat", "-t", "10", "-",
             "UNIX-CONNECT:\(path)"], input: lines)
        if result.status != 0 { return ["exit \(result.status): \(result.output)"] }
        return result.output.split(separator: "\n").map(String.init)
    }

    @discardableResult
    static func run(_ arguments: [String], input: String = "") -> (status: Int32, output: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-acl-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let inPath = directory.appendingPathComponent("in").path
        let outPath = directory.appendingPathComponent("out").path
        FileManager.default.createFile(atPath: inPath, contents: Data(input.utf8))
        let child: ChildProcess
        do {
            child = try ChildProcess(
                arguments[0], Array(arguments.dropFirst()), stdin: .file(inPath), stdout: .file(outPath), stderr: .standardOutput)
        } catch {
            return (-1, "cannot run \(arguments[0]): \(error)")
        }
        let status = child.waitBlocking()
        return (status, (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
    }

    func fixture() async throws -> ServerFixture {
        try Self.ensureAccounts()
        // Mode 0666 so the test users can connect; access is the ACL's job here.
        return try await ServerFixture(
            settings: SocketSettings(mode: 0o666), admins: AccessPolicy.Admins(groups: [Self.adminGroup]))
    }

    @Test func uidAndGroupRulesDecideAndProbingLooksLikeForbidden() async throws {
        let fixture = try await fixture()
        let uidA = Self.uid(Self.userA)
        let uidB = Self.uid(Self.userB)
        try await fixture.enroll("for-a", allow: ["uid:\(uidA)"])
        try await fixture.enroll("for-group", allow: ["group:\(Self.group)"])
        try await fixture.enroll("for-user-b", allow: ["user:\(Self.userB)"])
        let path = fixture.socketPath
        let (a, b) = try await blocking {
            (Self.ask(as: Self.userA, path: path, "GET for-a\nGET for-group\nGET no-such-identity\n"),
             Self.ask(as: Self.userB, path: path, "GET for-a\nGET for-group\nGET no-such-identity\nGET for-user-b\nSTATUS for-a\nLIST\n"))
        }
        try #require(a.count == 3 && b.count == 6, "\(a) \(b)")
        #expect(a.first?.hasPrefix("OK at-initial-for-a ") == true)
        // A is an admin (by group), so an unknown name is not_found for A...
        #expect(a.last == "ERR not_found no identity no-such-identity")
        #expect(a[1].hasPrefix("OK at-initial-for-group"), "admins may read every identity")
        // ...while B sees the same answer for a name that exists and one that does not.
        #expect(b[0] == "ERR forbidden identity not permitted for uid \(uidB)")
        #expect(b[2] == b[0])
        #expect(b[1].hasPrefix("OK at-initial-for-group "), "supplementary group membership counts")
        #expect(b[3].hasPrefix("OK at-initial-for-user-b "))
        #expect(b[4] == b[0], "STATUS is guarded like GET")
        #expect(b[5] == "OK 2 for-group for-user-b", "LIST shows only what the peer may read")
    }

    @Test func nonAdminsCannotUseAdminVerbs() async throws {
        let fixture = try await fixture()
        try await fixture.enroll("x", allow: ["user:\(Self.userB)"])
        let path = fixture.socketPath
        let replies = try await blocking {
            Self.ask(as: Self.userB, path: path, "ENROLL evil provider=p refresh_token=r\nREMOVE x\nREFRESH x\nSTATS\nRELOAD\n")
        }
        let uidB = Self.uid(Self.userB)
        #expect(replies.count == 5)
        for (reply, verb) in zip(replies, ["ENROLL", "REMOVE", "REFRESH", "STATS", "RELOAD"]) {
            #expect(reply == "ERR forbidden \(verb) is an admin verb; uid \(uidB) is not an admin")
        }
        #expect(try await fixture.vault.identity(named: IdentityName("evil")!) == nil)
        #expect(try await fixture.vault.identity(named: IdentityName("x")!) != nil)
        // A, an admin by group, may.
        let admin = try await blocking { Self.ask(as: Self.userA, path: path, "ENROLL ok provider=p refresh_token=r\n") }
        #expect(admin == ["OK enrolled generation=1"])
    }

    /// User names are looked up once per 30 s, not per `GET` (unknown ones
    /// too); a reload drops what was looked up, so a user created for a rule
    /// may read at once after it.
    @Test func aUserCreatedAfterItsRuleReadsAfterAReload() async throws {
        let fixture = try await fixture()
        let late = "tokend-acl-late"
        _ = Self.run(["/usr/sbin/userdel", late])
        defer { _ = Self.run(["/usr/sbin/userdel", late]) }
        try await fixture.enroll("for-late", allow: ["user:\(late)"])
        let path = fixture.socketPath
        let before = try await blocking { Self.ask(as: Self.userB, path: path, "GET for-late\n") }
        #expect(before == ["ERR forbidden identity not permitted for uid \(Self.uid(Self.userB))"])
        #expect(Self.run(["/usr/sbin/useradd", "-M", "-s", "/usr/sbin/nologin", late]).status == 0)
        let cached = try await blocking { Self.ask(as: late, path: path, "GET for-late\n") }
        #expect(cached == ["ERR forbidden identity not permitted for uid \(Self.uid(late))"], "the unknown name was cached")
        fixture.policy.policyChanged()
        let after = try await blocking { Self.ask(as: late, path: path, "GET for-late\n") }
        #expect(after.first?.hasPrefix("OK at-initial-for-late ") == true, "\(after)")
    }

    /// One uid cannot take every slot: past its share its connections get
    /// `ERR busy`, while another user still gets in.
    @Test func oneUIDHoldsAtMostItsShareOfConnections() async throws {
        try Self.ensureAccounts()
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o666, maxConnections: 100, maxConnectionsPerUID: 10))
        let path = fixture.socketPath
        let uid = getuid()
        let (served, refused, other) = try await blocking { () -> (Int, [String], [String]) in
            let clients = try (0..<12).map { _ in try TestClient(path: path, receiveTimeout: 5) }
            var served = 0
            var refused: [String] = []
            for client in clients {
                client.send("PING\n")
                if let line = client.readLine() {
                    if line == "OK PONG" { served += 1 } else { refused.append(line) }
                }
            }
            let other = Self.ask(as: Self.userB, path: path, "PING\n")
            _ = clients
            return (served, refused, other)
        }
        #expect(served == 10)
        #expect(refused == Array(repeating: "ERR busy too many connections from uid \(uid)", count: 2))
        #expect(other == ["OK PONG"])
        #expect(try await eventually { fixture.server.connectionCount == 0 })
    }
}
