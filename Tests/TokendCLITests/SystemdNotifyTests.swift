import Foundation
import Synchronization
import Testing
import TokendCore
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// A fake `$NOTIFY_SOCKET`: receives what the agent tells systemd.
final class NotifyReceiver: @unchecked Sendable {
    // @unchecked: the descriptor is read from one thread at a time.
    let path: String
    let fd: Int32

    init(path: String) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var (address, length) = UnixSocket.address(path)!
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Datagrams received until one contains `marker` (or `atMost` seconds).
    /// Datagrams until one contains `marker`; `whenSeen` runs the moment
    /// it arrives, before anything else is read.
    func collect(until marker: String, atMost seconds: Double, whenSeen: () -> Void = {}) -> [(String, Double)] {
        var messages: [(String, Double)] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { continue }
            let message = String(decoding: buffer[..<count], as: UTF8.self)
            messages.append((message, Date().timeIntervalSince(start)))
            if message.contains(marker) {
                whenSeen()
                break
            }
        }
        return messages
    }

    /// Datagrams received within `seconds` (blocking; call off the pool).
    func collect(for seconds: Double) -> [(String, Double)] {
        var messages: [(String, Double)] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 { messages.append((String(decoding: buffer[..<count], as: UTF8.self), Date().timeIntervalSince(start))) }
        }
        return messages
    }
}

@Suite("sd_notify: the agent tells systemd what it is doing", .serialized)
final class SystemdNotifyTests {
    /// Whether a Unix stream socket at `path` accepts a connection now
    /// (the kernel completes it into the backlog even if the agent is stopped).
    static func accepts(_ path: String) -> Bool {
        guard var (address, length) = UnixSocket.address(path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        } == 0
    }

    let directory = "/tmp/tokend-notify-\(UUID().uuidString.prefix(8))"

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    @Test func readyStatusWatchdogReloadAndStopping() async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/tokend.toml"
        let socketPath = directory + "/tokend.sock"
        _ = FileManager.default.createFile(atPath: directory + "/secret", contents: Data("s".utf8), attributes: [.posixPermissions: 0o600])
        _ = FileManager.default.createFile(atPath: config, contents: Data("""
            [vault]
            path = "\(directory)/vault.db"
            key_file = "\(directory)/vault.key"
            [socket]
            path = "\(socketPath)"
            [providers.none]
            kind = "oauth2"
            token_endpoint = "http://127.0.0.1:9/token"
            client_id = "c"
            client_secret_file = "\(directory)/secret"
            allow_insecure_http = true
            """.utf8))
        #expect(try await CommandRunner.tokend(["vault", "init", "--config", config]).status == 0)
        let line = #"{"name":"a","provider":"none","refresh_token":"r","access_token":"t","expires_in":3600}"#
        #expect(try await CommandRunner.tokend(["vault", "import", "--config", config], stdin: Data((line + "\n").utf8)).status == 0)

        let receiver = NotifyReceiver(path: directory + "/notify.sock")
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = receiver.path
        environment["WATCHDOG_USEC"] = "400000"
        let agent = try ChildProcess(
            CommandRunner.tokendPath, ["serve", "--config", config], output: directory + "/agent.log", environment: environment)

        // READY=1 comes only once the socket answers: the agent is frozen
        // the moment READY arrives, and its socket must accept right then.
        let socket = socketPath
        let acceptedAtReady = Mutex(false)
        let early = try await blockingRead {
            receiver.collect(until: "READY=1", atMost: 15) {
                agent.signal(SIGSTOP)
                defer { agent.signal(SIGCONT) }
                acceptedAtReady.withLock { $0 = Self.accepts(socket) }
            }
        } + (try await blockingRead { receiver.collect(for: 3) })
        #expect(acceptedAtReady.withLock { $0 }, "READY=1 was sent before the socket was listening")
        let ready = try #require(early.first { $0.0.contains("READY=1") }, "\(agent.output)")
        #expect(ready.0.contains("STATUS=1 identity: 1 fresh"))
        let pong = try await CommandRunner.run("/bin/sh", ["-c", "printf 'PING\\n' | socat -t 30 - UNIX-CONNECT:\(socketPath)"])
        #expect(pong.stdout == "OK PONG\n")
        // The watchdog (every 200 ms, from the scheduler loop).
        let pings = early.filter { $0.0 == "WATCHDOG=1" }
        #expect(pings.count >= 4, "\(early.map(\.0))")

        agent.signal(SIGHUP)
        let reload = try await blockingRead { receiver.collect(until: "READY=1", atMost: 10) }.map(\.0)
        let reloading = try #require(reload.firstIndex { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") }, "\(reload)")
        #expect(reload[reloading...].contains { $0.hasPrefix("READY=1") })

        agent.signal(SIGTERM)
        let stop = try await blockingRead { receiver.collect(until: "STOPPING=1", atMost: 10) }.map(\.0)
        #expect(stop.contains { $0.hasPrefix("STOPPING=1") }, "\(stop)")
        #expect(await agent.wait(timeout: .seconds(30)) == 0)
    }

    func blockingRead<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }
}
