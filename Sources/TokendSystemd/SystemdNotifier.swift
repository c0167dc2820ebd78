import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// `sd_notify` without libsystemd: datagrams on `$NOTIFY_SOCKET` telling
/// systemd the agent is ready, reloading, stopping, alive (watchdog), and a
/// one-line status for `systemctl status`.
package final class SystemdNotifier: Sendable {
    private let address: sockaddr_un?
    private let addressLength: socklen_t
    /// Half of `WATCHDOG_USEC`: how often to ping, if systemd asked for it.
    package let watchdogInterval: Duration?
    private let lastPing = Mutex<ContinuousClock.Instant?>(nil)
    /// The status line systemd was last sent.
    private let told = Mutex<String?>(nil)

    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        var resolved: sockaddr_un? = nil
        var length: socklen_t = 0
        if let path = environment["NOTIFY_SOCKET"], let (address, size) = UnixSocket.address(path) {
            resolved = address
            length = size
        }
        address = resolved
        addressLength = length
        var interval: Duration? = nil
        if let usec = environment["WATCHDOG_USEC"].flatMap(Int64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            interval = .microseconds(usec / 2)
        }
        watchdogInterval = interval
    }

    /// Whether systemd is listening (the agent runs under `Type=notify`).
    package var isActive: Bool { address != nil }

    package func ready(status: String) {
        told.withLock { $0 = status }
        send("READY=1\nSTATUS=\(status)")
    }

    package func status(_ text: String) {
        told.withLock { $0 = text }
        send("STATUS=\(text)")
    }

    /// Sends `text` as the status unless it is what systemd was last told
    /// (by any of these calls): an idle agent sends nothing.
    package func statusIfChanged(_ text: String) {
        let changed = told.withLock { told -> Bool in
            defer { told = text }
            return told != text
        }
        if changed { send("STATUS=\(text)") }
    }

    package func stopping() {
        told.withLock { $0 = "stopping" }
        send("STOPPING=1\nSTATUS=stopping")
    }

    package func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        send("RELOADING=1\nMONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000)")
    }

    /// Pings the watchdog, at most once per interval.
    package func watchdog() {
        guard let interval = watchdogInterval else { return }
        let now = ContinuousClock.now
        let due = lastPing.withLock { last -> Bool in
            guard last.map({ now - $0 >= interval }) ?? true else { return false }
            last = now
            return true
        }
        if due { send("WATCHDOG=1") }
    }

    package func send(_ message: String) {
        guard var address else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), pointer, addressLength) }
            }
        }
    }
}
