import Foundation
import Testing
import TokendCore
import TokendTestKit

@testable import TokendServer

#if canImport(Glibc)
import Glibc
#endif

/// `unit:` rules name the *system* unit that contains a process, as
/// systemd's `sd_pid_get_unit` does; a user's own service manager can name
/// its units anything, so its units never match.
@Suite("Systemd unit of a peer")
struct PeerUnitTests {
    @Test(arguments: [
        ("0::/system.slice/billing-worker.service\n", "billing-worker.service"),
        ("0::/system.slice/system-getty.slice/getty@tty1.service\n", "getty@tty1.service"),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/billing-worker.service\n", "user@1000.service"),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
        ("0::/system.slice/billing-worker.service/child\n", "billing-worker.service"),
        ("12:pids:/system.slice/x.service\n0::/init.scope\n", "init.scope"),
    ])
    func theSystemUnitIsTheFirstComponentThatIsNotASlice(cgroup: String, unit: String) {
        #expect(ProcessInfoReader.systemUnit(cgroupFile: cgroup) == unit)
    }

    @Test(arguments: ["0::/\n", "0::/user.slice/user-1000.slice\n", "", "1:name=systemd:/system.slice/x.service\n", "0::/system.slice/noext\n"])
    func noUnitWhenThereIsNone(cgroup: String) {
        #expect(ProcessInfoReader.systemUnit(cgroupFile: cgroup) == nil)
    }
}

/// Real processes in real cgroups (the cgroup v2 hierarchy of this machine),
/// connecting to a real socket: the unit is the one the peer was in when
/// its connection was accepted, and a user unit never passes for a system one.
@Suite("unit: rules with real cgroups", .serialized)
struct UnitRuleLiveTests {
    static let cgroupRoot = "/sys/fs/cgroup/unified"

    /// A cgroup made for the test, removed afterwards.
    final class Cgroup: @unchecked Sendable {
        let path: String
        init(_ relative: String) throws {
            path = UnitRuleLiveTests.cgroupRoot + "/" + relative
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit {
            var directory = path
            while directory.hasPrefix(UnitRuleLiveTests.cgroupRoot + "/") {
                rmdir(directory)
                directory = (directory as NSString).deletingLastPathComponent
            }
        }
    }

    @Test func aSystemUnitMatchesAndAUserUnitOfTheSameNameDoesNot() async throws {
        #expect(FileManager.default.isWritableFile(atPath: Self.cgroupRoot + "/cgroup.procs"), "cgroup v2 must be writable (run as root)")
        let tag = "tokendtest-\(UUID().uuidString.prefix(8))"
        let system = try Cgroup("\(tag).slice/billing-worker.service")
        let user = try Cgroup("\(tag).slice/user-1000.slice/user@1000.service/app.slice/billing-worker.service")
        let other = try Cgroup("\(tag).slice/other.service")
        let fixture = try await ServerFixture(admins: .init(), agentUID: getuid())
        try await fixture.enroll("a", allow: ["unit:billing-worker.service"])
        // Root is always an admin; the peer drops to a plain uid first.
        let path = fixture.socketPath
        chmod(path, 0o666)

        let fromSystem = try await Self.peerAsNobody(socket: path, before: system, after: system)
        #expect(fromSystem.first == "OK PONG")
        #expect(fromSystem.last?.hasPrefix("OK at-initial-a ") == true, "\(fromSystem)")

        let fromUser = try await Self.peerAsNobody(socket: path, before: user, after: user)
        #expect(fromUser.last?.hasPrefix("ERR forbidden") == true, "\(fromUser)")

        // Bound at accept: moving into the unit afterwards grants nothing,
        // and leaving it afterwards takes nothing away from that connection.
        let joinedLater = try await Self.peerAsNobody(socket: path, before: other, after: system)
        #expect(joinedLater.last?.hasPrefix("ERR forbidden") == true, "\(joinedLater)")
        let leftLater = try await Self.peerAsNobody(socket: path, before: system, after: other)
        #expect(leftLater.last?.hasPrefix("OK at-initial-a ") == true, "\(leftLater)")
        _ = (system, user, other)
    }

    /// The same peer, as uid/gid 65534 (moving cgroups happens before the
    /// drop, by the root parent, so the script joins them through a shell).
    static func peerAsNobody(socket: String, before: Cgroup, after: Cgroup) async throws -> [String] {
        let script = """
            import os, socket, sys
            def join(cgroup): open(cgroup + "/cgroup.procs", "w").write(str(os.getpid()))
            join(sys.argv[2])
            s = socket.socket(socket.AF_UNIX)
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            s.connect(sys.argv[1]); f = s.makefile("rb")
            s.sendall(b"PING\\n"); print(f.readline().decode().strip(), flush=True)
            # Unprivileged now: ask the parent (root) to move us.
            print("MOVE", os.getpid(), flush=True)
            sys.stdin.readline()
            s.sendall(b"GET a\\n"); print(f.readline().decode().strip(), flush=True)
            """
        return try await blocking {
            // The child gets its ends as 0 and 1 only (Spawn closes the rest).
            var input: [Int32] = [-1, -1]
            var output: [Int32] = [-1, -1]
            guard pipe(&input) == 0, pipe(&output) == 0 else { throw POSIXError(.EMFILE) }
            let child: ChildProcess
            do {
                child = try ChildProcess(
                    "/usr/bin/python3", ["-c", script, socket, before.path],
                    stdin: .descriptor(input[0]), stdout: .descriptor(output[1]), stderr: .inherit)
            } catch {
                for fd in input + output { close(fd) }
                throw error
            }
            close(input[0])
            close(output[1])
            let writer = FileHandle(fileDescriptor: input[1], closeOnDealloc: true)
            let handle = FileHandle(fileDescriptor: output[0], closeOnDealloc: true)
            defer { child.signal(SIGTERM) }
            var lines: [String] = []
            var buffer = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                    buffer.removeSubrange(buffer.startIndex...newline)
                    if line.hasPrefix("MOVE ") {
                        try String(line.dropFirst(5)).write(toFile: after.path + "/cgroup.procs", atomically: false, encoding: .utf8)
                        writer.write(Data("go\n".utf8))
                    } else {
                        lines.append(line)
                    }
                }
            }
            _ = child.waitBlocking()
            return lines
        }
    }
}

/// A peer process as uid/gid 4242 (no account needed for `uid:` rules),
/// talking to the socket from Python; its lines land in a file.
final class UnprivilegedPeer: @unchecked Sendable {
    let child: ChildProcess
    let outputPath: String

    /// Connects and sends `request`, then prints every line it receives,
    /// then `EOF` when the server closes.
    init(socket: String, request: String, uid: UInt32 = 4242) throws {
        outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("peer-\(UUID().uuidString)").path
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\\n")
            for line in s.makefile("rb"): print(line.decode().rstrip("\\n"), flush=True)
            print("EOF", flush=True)
            """
        child = try ChildProcess(
            "/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "/usr/bin/python3", "-c", script, socket, request],
            output: outputPath)
    }

    var lines: [String] { child.output.split(separator: "\n").map(String.init) }

    deinit { unlink(outputPath) }
}

@Suite("Hostile and unlucky peers", .serialized)
struct HostilePeerTests {
    /// Access is decided at every delivery: a WATCH of a peer that lost
    /// access ends with `ERR forbidden`, and it never sees the new token.
    @Test func aWatchEndsWhenReEnrollmentTakesAccessAway() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o666))
        try await fixture.enroll("w", allow: ["uid:4242"])
        let peer = try UnprivilegedPeer(socket: fixture.socketPath, request: "WATCH w")
        #expect(await eventually { peer.lines.first?.hasPrefix("OK at-initial-w ") == true }, "\(peer.lines)")
        try await fixture.enroll("w", allow: ["uid:4343"], token: "at-after")
        #expect(await eventually { peer.lines.last == "EOF" }, "\(peer.lines)")
        #expect(peer.lines.dropFirst().first?.hasPrefix("ERR forbidden") == true, "\(peer.lines)")
        #expect(!peer.child.output.contains("at-after"))
        _ = await peer.child.wait(timeout: .seconds(5))
    }

    @Test func aWatchEndsWhenAReloadTakesAdminRightsAway() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o666), admins: .init(uids: [4242]))
        try await fixture.enroll("w", allow: [])
        let peer = try UnprivilegedPeer(socket: fixture.socketPath, request: "WATCH w")
        #expect(await eventually { peer.lines.first?.hasPrefix("OK at-initial-w ") == true }, "\(peer.lines)")
        // A reload that drops the uid from [admins]: no token change needed.
        fixture.policy.setAdmins(.init())
        #expect(await eventually { peer.lines.last == "EOF" }, "\(peer.lines)")
        #expect(peer.lines.dropFirst().first?.hasPrefix("ERR forbidden") == true, "\(peer.lines)")
    }

    /// A reader cannot turn GETs into refreshes: `min_ttl` beyond half the
    /// token's lifetime is capped, and such refreshes wait their turn.
    @Test func aReaderAskingForAYearOfLifetimeCausesNoRefreshStorm() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o666))
        try await fixture.enroll("r", allow: ["uid:4242"], lifetime: 3600)
        let script = (0..<50).map { _ in "GET r min_ttl=31536000" }.joined(separator: "\n")
        let peer = try UnprivilegedPeer(socket: fixture.socketPath, request: script)
        #expect(await eventually { peer.lines.count >= 50 }, "\(peer.lines)")
        #expect(peer.lines.prefix(50).allSatisfy { $0.hasPrefix("OK at-initial-r ") }, "\(peer.lines.prefix(3))")
        #expect(fixture.provider.callCount == 0)
    }

    /// A client that sends and never reads: the server stops reading from
    /// it once its replies pile up, so the client's writes block, instead
    /// of the agent queueing replies without end.
    @Test func aClientThatNeverReadsIsBoundedByBackpressure() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("big", lifetime: 3600, token: String(repeating: "t", count: 900))
        let path = fixture.socketPath
        let sent = try await blocking { () -> Int in
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard connected == 0 else { return -1 }
            var small: Int32 = 64 * 1024
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let request = Array("GET big\n".utf8)
            var total = 0
            var stalledSince: Date? = nil
            // Every request asks for a 900-byte reply; stop once writes have
            // been refused for a second (the server stopped reading) or at
            // 64 MiB of requests (it never did: unbounded replies).
            while total < 64 << 20 {
                let written = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if written > 0 {
                    total += written
                    stalledSince = nil
                } else if errno == EAGAIN {
                    if let since = stalledSince, Date().timeIntervalSince(since) > 1 { break }
                    if stalledSince == nil { stalledSince = Date() }
                    usleep(10_000)
                } else {
                    return -2
                }
            }
            return total
        }
        #expect(sent > 0)
        #expect(sent < 64 << 20, "the server kept reading \(sent) bytes of requests from a client that never read")
        // The agent still serves everyone else.
        #expect(try await fixture.ask("PING") == "OK PONG")
    }
}

@Suite("LIST pages")
struct ListPageTests {
    /// A peer that may read one identity among thousands gets short pages
    /// with a `next=` cursor, never a scan of the whole table at once.
    @Test func aListLooksAtABoundedNumberOfIdentitiesPerRequest() throws {
        let cache = TokenEngineTestSupport.cache(count: 5000, readable: "id-4321")
        var looked = 0
        let page = cache.page(prefix: nil, after: nil, limit: 100, budget: 1000) { snapshot in
            looked += 1
            return snapshot.allowRules.contains("uid:1")
        }
        #expect(looked == 1000)
        #expect(page.names.isEmpty)
        #expect(page.next?.rawValue == "id-1999")

        // Following the cursors finds it, and the walk ends.
        var cursor: IdentityName? = nil
        var found: [String] = []
        var requests = 0
        repeat {
            let next = cache.page(prefix: nil, after: cursor, limit: 100, budget: 1000) { $0.allowRules.contains("uid:1") }
            found += next.names.map(\.rawValue)
            cursor = next.next
            requests += 1
        } while cursor != nil && requests < 100
        #expect(found == ["id-4321"])
        #expect(requests == 6)
    }

    @Test func pagesFollowByteOrderWithPrefixAndLimit() throws {
        let cache = TokenEngineTestSupport.cache(count: 300, readable: nil)
        let first = cache.page(prefix: "id-1", after: nil, limit: 10, budget: 1000) { _ in true }
        #expect(first.names.map(\.rawValue) == (1000..<1010).map { "id-\($0)" })
        #expect(first.next?.rawValue == "id-1009")
        let last = cache.page(prefix: "id-1", after: IdentityName("id-1290")!, limit: 100, budget: 1000) { _ in true }
        #expect(last.names.map(\.rawValue) == (1291..<1300).map { "id-\($0)" })
        #expect(last.next == nil)
    }
}

import TokendCache
import TokendEngine

enum TokenEngineTestSupport {
    /// A cache of `count` identities `id-1000`, `id-1001`...; only
    /// `readable` allows uid 1. Inserted out of order on purpose.
    static func cache(count: Int, readable: String?) -> TokenCache {
        let cache = TokenCache()
        for index in (0..<count).reversed() {
            let name = "id-\(1000 + index)"
            cache.update(TokenSnapshot(
                name: IdentityName(name)!, provider: "p", allowRules: name == readable ? ["uid:1"] : [],
                accessToken: nil, tokenType: "Bearer", issuedAt: nil, expiresAt: nil, condition: .active,
                refreshing: false, failures: 0, lastError: nil, generation: 1, nextRefresh: nil, retryAt: nil))
        }
        return cache
    }
}

@Suite("LIST to a reader", .serialized)
struct ListToAReaderTests {
    /// A reader walking LIST never sees a name it may not read, even where
    /// the scan budget stops on one: it gets an opaque cursor instead.
    @Test func aReaderPagesWithOpaqueCursorsAndSeesOnlyItsOwnNames() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o666))
        for index in 0..<1100 {
            _ = try await fixture.engine.enroll(Enrollment(
                name: IdentityName("secret-\(1000 + index)")!, provider: "p", refreshToken: Secret("rt")))
        }
        try await fixture.enroll("zz-mine", allow: ["uid:4242"])
        let first = try UnprivilegedPeer(socket: fixture.socketPath, request: "LIST")
        #expect(await eventually { first.lines.count >= 1 }, "\(first.lines)")
        let reply = try #require(first.lines.first)
        #expect(reply.hasPrefix("OK 0 next=cursor:"), "\(reply)")
        #expect(!first.child.output.contains("secret-"))
        let cursor = String(reply.split(separator: "=").last!)
        let second = try UnprivilegedPeer(socket: fixture.socketPath, request: "LIST after=\(cursor)")
        #expect(await eventually { second.lines.count >= 1 }, "\(second.lines)")
        #expect(second.lines.first == "OK 1 zz-mine", "\(second.lines)")
        let forged = try UnprivilegedPeer(socket: fixture.socketPath, request: "LIST after=cursor:0000")
        #expect(await eventually { forged.lines.first?.hasPrefix("ERR bad_request") == true }, "\(forged.lines)")
    }
}
