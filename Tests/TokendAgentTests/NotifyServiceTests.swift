import Foundation
import Testing
import TokendCache
import TokendCore
import TokendSystemd
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
final class NotifySocket {
    let path = "/tmp/tokend-notify-unit-\(UUID().uuidString.prefix(8)).sock"
    let fd: Int32

    init() throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var (address, length) = try #require(UnixSocket.address(path))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        try #require(bound == 0)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Every datagram queued now, without waiting for more.
    func drain() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { return messages }
            messages.append(String(decoding: buffer[..<count], as: UTF8.self))
        }
    }
}

@Suite("The systemd status line: sent when the counts change, never again while they do not")
struct NotifyServiceTests {
    func snapshot(_ name: String) -> TokenSnapshot {
        TokenSnapshot(
            name: IdentityName(name)!, provider: "p", allowRules: [], accessToken: Secret("at-\(name)"), tokenType: "Bearer",
            issuedAt: Date(), expiresAt: Date().addingTimeInterval(86_400), condition: .active, refreshing: false,
            failures: 0, lastError: nil, generation: 1, nextRefresh: nil, retryAt: nil)
    }

    @Test func anUnchangedStatusIsNotSentAgain() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path])
        let cache = TokenCache()
        cache.update(snapshot("a"))
        let clock = ManualClock()
        let service = NotifyService(notifier: notifier, cache: cache, clock: clock, interval: .seconds(5), onReady: {})
        let running = Task { try await service.run() }
        defer { running.cancel() }

        /// One turn of the status loop: wait until it sleeps, wake it, and
        /// wait until it sleeps again (whatever it sent is queued by then).
        // (A long patience: a busy test run can keep the loop's task
        // from running for seconds; nothing here depends on timing.)
        func turn() async {
            #expect(await eventually(timeout: .seconds(60)) { clock.wakesSleeper(advancingBy: .seconds(5)) })
            clock.advance(by: .seconds(5))
            #expect(await eventually(timeout: .seconds(60)) { clock.wakesSleeper(advancingBy: .seconds(5)) })
        }

        await turn()
        #expect(socket.drain() == ["READY=1\nSTATUS=1 identity: 1 fresh"])
        for _ in 0..<3 { await turn() }
        #expect(socket.drain() == [])

        cache.update(snapshot("b"))
        await turn()
        #expect(socket.drain() == ["STATUS=2 identities: 2 fresh"])
        await turn()
        #expect(socket.drain() == [])

        // Someone else told systemd another status (a reload's READY=1):
        // the loop compares with what systemd was last told, not with
        // what it sent itself.
        notifier.ready(status: "reloading")
        _ = socket.drain()
        await turn()
        #expect(socket.drain() == ["STATUS=2 identities: 2 fresh"])
    }
}
