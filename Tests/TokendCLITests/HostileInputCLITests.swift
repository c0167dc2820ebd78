import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The real binary against broken files, taken ports and edited
/// configurations: clear errors with the right exit code, nothing lost.
@Suite("tokend against hostile files and neighbours", .serialized)
final class HostileInputCLITests {
    let directory = "/tmp/tokend-hostile-\(UUID().uuidString.prefix(8))"
    var config: String { directory + "/tokend.toml" }
    var socket: String { directory + "/tokend.sock" }

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: directory + "/demo.secret", contents: Data("s\n".utf8), attributes: [.posixPermissions: 0o600])
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func writeConfig(_ extra: String = "", socketSection: String = "") {
        _ = FileManager.default.createFile(atPath: config, contents: Data((
            CommandRunner.configHeader(directory: directory, socket: socket, socketExtra: socketSection) + """
            [providers.demo]
            kind = "oauth2"
            token_endpoint = "http://127.0.0.1:9/token"
            allow_insecure_http = true
            client_id = "c"
            client_secret_file = "\(directory)/demo.secret"
            \(extra)
            """).utf8))
    }

    /// Imports one identity with a token valid for an hour (no provider call).
    func importIdentity(_ name: String, allow: [String] = []) async throws -> CommandRunner.Result {
        let rules = allow.map { "\"\($0)\"" }.joined(separator: ", ")
        let line = #"{"name": "\#(name)", "provider": "demo", "refresh_token": "rt", "access_token": "at-\#(name)", "expires_in": 3600, "allow": [\#(rules)]}"#
        return try await CommandRunner.tokend(["vault", "import", "--config", config], stdin: Data((line + "\n").utf8))
    }

    @Test func anErrorWithoutItsOwnExitCodeDoesNotExitOne() async throws {
        // A socket group that does not exist: the agent cannot start.
        writeConfig(socketSection: #"group = "no-such-group-tokend""#)
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let result = try await CommandRunner.tokend(["serve", "--config", config], killAfter: .seconds(20))
        #expect(result.status != 0 && result.status != 1, "exit \(result.status): 1 means 'corrupt values found'")
        #expect(result.status == 70 || result.status == 2, "\(result.status) \(result.stderr)")
        #expect(result.stderr.contains("no-such-group-tokend"), "\(result.stderr)")
    }

    @Test func importRefusesAnUnknownAllowRuleWithItsLineNumber() async throws {
        writeConfig()
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let lines = [
            #"{"name": "good", "provider": "demo", "refresh_token": "rt-SECRET-1", "allow": ["uid:1001"]}"#,
            #"{"name": "bad", "provider": "demo", "refresh_token": "rt-SECRET-2", "allow": ["uid:1001", "usr:billing\n"]}"#,
        ]
        let result = try await CommandRunner.tokend(
            ["vault", "import", "--config", config], stdin: Data(lines.joined(separator: "\n").utf8 + [0x0A]))
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("line 2"), "\(result.stderr)")
        #expect(result.stderr.contains("allow rule"), "\(result.stderr)")
        #expect(!result.stderr.contains("SECRET"))
        // All or nothing: the good line was not imported either.
        let list = try await CommandRunner.tokend(["vault", "list", "--config", config])
        #expect(!list.stdout.contains("good"), "\(list.stdout)")
    }

    /// Another local user bound the metrics port first: the agent starts
    /// anyway, serves tokens, and says why it has no metrics.
    @Test func aTakenMetricsPortDoesNotStopTheAgent() async throws {
        let squatter = socket_tcp_listener()
        defer { close(squatter.fd) }
        writeConfig("\n[metrics]\nlisten = \"127.0.0.1:\(squatter.port)\"\n")
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        #expect(try await importIdentity("m").status == 0)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) }, "\(agent.output)")
        let token = try await CommandRunner.tokend(["get", "m", "--socket", socket])
        #expect(token.status == 0 && token.stdout.hasPrefix("at-m"), "\(token.stderr) \(agent.output)")
        #expect(await eventually { agent.output.contains("cannot listen for metrics") }, "\(agent.output)")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
    }

    /// More connections than the agent has descriptors for: it says so,
    /// pauses accepting instead of spinning on the waiting connections,
    /// keeps serving the ones it has, and takes new ones once descriptors
    /// are free again.
    @Test func runningOutOfDescriptorsPausesAcceptingAndRecovers() async throws {
        writeConfig("")
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        #expect(try await importIdentity("m").status == 0)
        // Two event loops whatever the machine (SwiftNIO makes one per core,
        // three descriptors each): the 64 leave room for about 35 clients.
        var environment = ProcessInfo.processInfo.environment
        environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] = "2"
        let agent = try ChildProcess(
            "/usr/bin/prlimit", ["--nofile=64:64", "--", CommandRunner.tokendPath, "serve", "--config", config],
            output: directory + "/agent.log", environment: environment)
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) }, "\(agent.output)")
        // 150 connections, each sends a GET; the agent can hold about 40.
        // While they wait, its CPU time over 2 s is measured.
        let crowd = try await CommandRunner.run(
            "/usr/bin/python3",
            ["-c", """
                import os, socket, time
                def ticks():
                    fields = open("/proc/\(agent.pid)/stat").read().rsplit(")", 1)[1].split()
                    return int(fields[11]) + int(fields[12])
                held = []
                for _ in range(150):
                    s = socket.socket(socket.AF_UNIX); s.connect("\(path)"); s.sendall(b"GET m\\n"); held.append(s)
                time.sleep(0.5)
                before = ticks(); time.sleep(2); spent = ticks() - before
                answered = 0
                for s in held:
                    s.settimeout(0.05)
                    try:
                        if s.recv(4096).startswith(b"OK at-m"): answered += 1
                    except OSError: pass
                print(spent, answered)
                for s in held: s.close()
                """])
        let figures = crowd.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(figures.count == 2, "\(crowd.stdout) \(crowd.stderr)")
        if figures.count == 2 {
            #expect(figures[0] < 50, "the agent spent \(figures[0]) ticks of 10 ms in 2 s while out of descriptors")
            #expect(figures[1] >= 10 && figures[1] < 150, "\(figures[1]) of 150 answered")
        }
        #expect(agent.output.contains("cannot accept a connection"), "\(agent.output)")
        // The crowd is gone: new clients are served again.
        #expect(await eventually(timeout: .seconds(10)) {
            let token = try? await CommandRunner.tokend(["get", "m", "--socket", path])
            return token?.status == 0 && token?.stdout.hasPrefix("at-m") == true
        }, "\(agent.output)")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
    }

    /// A descriptor passed as the systemd socket that is not a listening
    /// Unix stream socket (a file, a datagram socket, one end of a
    /// connection, as `Accept=yes` passes): the agent refuses to start and
    /// says why, instead of accepting on it forever.
    @Test(arguments: ["file", "datagram", "connection"])
    func aPassedDescriptorThatCannotAcceptIsRefusedAtStart(kind: String) async throws {
        writeConfig("")
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let agent = try ChildProcess(
            "/usr/bin/python3",
            ["-c", """
                import os, socket, sys
                kind = sys.argv[1]
                if kind == "file": fd = os.open("/dev/null", os.O_RDONLY)
                elif kind == "datagram": held = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); fd = held.fileno()
                else: held, other = socket.socketpair(); fd = held.fileno()
                os.dup2(os.dup(fd), 3, inheritable=True)
                os.environ["LISTEN_PID"] = str(os.getpid()); os.environ["LISTEN_FDS"] = "1"
                os.execv(sys.argv[2], [sys.argv[2], "serve", "--config", sys.argv[3]])
                """, kind, CommandRunner.tokendPath, config],
            output: directory + "/agent-\(kind).log")
        let status = await agent.wait(timeout: .seconds(30))
        #expect(status != nil && status != 0, "exit status \(String(describing: status))")
        if status == nil { await agent.kill() }
        #expect(agent.output.contains("is not a listening Unix stream socket"), "\(agent.output)")
    }

    @Test func theMetricsListenerCapsBodiesAndConnections() async throws {
        let free = socket_tcp_listener()
        close(free.fd)
        writeConfig("\n[metrics]\nlisten = \"127.0.0.1:\(free.port)\"\n")
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        let path = socket
        #expect(await eventually { FileManager.default.fileExists(atPath: path) }, "\(agent.output)")
        // A 1 MiB body is refused, not buffered.
        let big = try await CommandRunner.run(
            "/usr/bin/python3",
            ["-c", """
                import socket; s = socket.create_connection(("127.0.0.1", \(free.port)))
                body = b"x" * (1 << 20)
                s.sendall(b"POST /metrics HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body))
                try: s.sendall(body)
                except OSError: pass
                print(s.recv(100).split(b"\\r\\n")[0].decode())
                """])
        #expect(big.stdout.contains("413"), "\(big.stdout) \(big.stderr)")
        // Many idle connections: beyond the cap they are closed at once, and
        // a scrape still works once they go.
        let crowd = try await CommandRunner.run(
            "/usr/bin/python3",
            ["-c", """
                import socket, time
                held = [socket.create_connection(("127.0.0.1", \(free.port))) for _ in range(200)]
                time.sleep(1)
                closed = 0
                for s in held:
                    try:
                        if s.recv(1, socket.MSG_DONTWAIT) == b"": closed += 1
                    except BlockingIOError: pass
                    except ConnectionResetError: closed += 1
                print(closed)
                """])
        #expect((Int(crowd.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 100, "\(crowd.stdout) \(crowd.stderr)")
        let scrape = try await CommandRunner.run("/usr/bin/python3", ["-c", """
            import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:\(free.port)/metrics").status)
            """])
        #expect(scrape.stdout.contains("200"), "\(scrape.stdout) \(scrape.stderr)")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
    }

    /// Token files follow the configuration at once on reload (new path,
    /// mode), are rewritten when deleted, and removed with their identity.
    @Test func tokenFilesFollowTheConfigurationAndSurviveDeletion() async throws {
        let fake = try await FakeTransmitServer.start()
        FileManager.default.createFile(
            atPath: directory + "/transmit.secret", contents: Data("\(FakeTransmitServer.clientSecret)\n".utf8),
            attributes: [.posixPermissions: 0o600])
        let first = directory + "/first.token"
        let second = directory + "/second.token"
        func configure(file: String?, mode: String) {
            let identity = file.map {
                "[identities.files]\nprovider = \"transmit\"\ngrant = \"client_credentials\"\n"
                    + "token_file = \"\($0)\"\ntoken_file_mode = \"\(mode)\"\n"
            } ?? ""
            writeConfig(CommandRunner.transmitProvider(fake, directory: directory) + "\n\n" + identity)
        }
        configure(file: first, mode: "0600")
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let agent = try ChildProcess(CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log")
        #expect(await eventually { FileManager.default.fileExists(atPath: first) }, "\(agent.output)")
        let token = try await CommandRunner.tokend(["get", "files", "--socket", socket])
        #expect(token.status == 0, "\(token.stderr)")
        #expect((try? String(contentsOfFile: first, encoding: .utf8)) == token.stdout, "\(token.stdout)")

        // Deleted: written again.
        unlink(first)
        #expect(await eventually { FileManager.default.fileExists(atPath: first) }, "\(agent.output)")

        // Moved and made group-readable by a reload: the new file appears
        // at once with the new mode, the old one is removed.
        configure(file: second, mode: "0640")
        agent.signal(SIGHUP)
        #expect(await eventually { FileManager.default.fileExists(atPath: second) }, "\(agent.output)")
        var info = stat()
        #expect(stat(second, &info) == 0 && info.st_mode & 0o777 == 0o640)
        #expect(await eventually { !FileManager.default.fileExists(atPath: first) }, "\(agent.output)")

        // The identity leaves the configuration: its file goes too.
        configure(file: nil, mode: "0600")
        agent.signal(SIGHUP)
        #expect(await eventually { !FileManager.default.fileExists(atPath: second) }, "\(agent.output)")

        // Named again after a time with no token file at all (the checks
        // sleep until a reload names one): written, and checked again.
        configure(file: first, mode: "0600")
        agent.signal(SIGHUP)
        #expect(await eventually { FileManager.default.fileExists(atPath: first) }, "\(agent.output)")
        unlink(first)
        #expect(await eventually { FileManager.default.fileExists(atPath: first) }, "the once-a-second check runs again")
        agent.signal(SIGTERM)
        #expect(await agent.wait(timeout: .seconds(20)) == 0)
    }
}

/// A TCP listener on a free loopback port (the "squatter" of a test).
func socket_tcp_listener() -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(fd, $0, length)
            _ = getsockname(fd, $0, &length)
        }
    }
    listen(fd, 16)
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
