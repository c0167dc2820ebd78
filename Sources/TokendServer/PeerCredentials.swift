import CTokendSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a connection, captured once, when it is
/// accepted: the kernel's `SO_PEERCRED` (the credentials at `connect()`),
/// and the systemd unit the process runs in.
package struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    package var pid: Int32
    package var uid: UInt32
    package var gid: UInt32
    /// The peer's start time (`/proc/<pid>/stat` field 22) at accept.
    package var startTime: UInt64?
    /// The system unit that contains the peer, as `sd_pid_get_unit` names
    /// it; nil when it could not be read about *this* process (it exited,
    /// or its pid was reused before we looked).
    package var unit: String?

    package init(pid: Int32, uid: UInt32, gid: UInt32, startTime: UInt64? = nil, unit: String? = nil) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.startTime = startTime
        self.unit = unit
    }

    package var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    /// `struct ucred` (Swift's Glibc module hides it behind `_GNU_SOURCE`).
    private struct UCred: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// Reads the credentials of an accepted Unix socket, or nil if the
    /// kernel will not say. Call it at accept, so what it reads is the peer
    /// as it connected.
    ///
    /// - Parameter process: also identify the peer's process (its start
    ///   time and systemd unit, from `/proc`), which only `unit:` rules
    ///   need. Without it a `unit:` rule never matches this connection.
    static func read(socket: Int32, process identifyProcess: Bool = true) -> PeerCredentials? {
        var raw = UCred()
        var length = socklen_t(MemoryLayout<UCred>.size)
        guard getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &raw, &length) == 0,
            length == socklen_t(MemoryLayout<UCred>.size)
        else { return nil }
        guard identifyProcess else { return PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid) }
        // SO_PEERPIDFD (Linux 6.5+) pins the process itself; older kernels
        // refuse the option and we fall back to start times. Any other
        // failure (the peer already reaped) proves nothing.
        let pidfd = tokend_peer_pidfd(socket)
        let process: PeerProcess = pidfd >= 0 ? .pidfd(pidfd) : (errno == ENOPROTOOPT ? .noPidfdSupport : .unknown)
        defer { if pidfd >= 0 { close(pidfd) } }
        let (startTime, unit) = ProcessInfoReader.identify(raw.pid, process: process)
        return PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid, startTime: startTime, unit: unit)
    }
}

/// How sure we can be that `/proc/<pid>` is the peer.
enum PeerProcess {
    /// A pidfd of the peer itself (`SO_PEERPIDFD`).
    case pidfd(Int32)
    /// An older kernel: compare start times before and after the reads.
    case noPidfdSupport
    /// The kernel could not say (the peer is gone): trust nothing.
    case unknown
}

/// Small readers of `/proc/<pid>`.
enum ProcessInfoReader {
    /// The start time and unit of `pid`, trusted only if they provably
    /// belong to the process that connected: with a pidfd, that process is
    /// still alive after the reads (so its pid was not reused); without one,
    /// its start time is the same before and after them.
    static func identify(_ pid: Int32, process: PeerProcess) -> (startTime: UInt64?, unit: String?) {
        guard pid > 0 else { return (nil, nil) }
        let before = startTime(of: pid)
        let cgroup = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        let same: Bool
        switch process {
        case .pidfd(let descriptor): same = descriptor >= 0 && tokend_pidfd_alive(descriptor) == 0
        case .noPidfdSupport: same = before != nil && startTime(of: pid) == before
        case .unknown: same = false
        }
        guard same, let cgroup else { return (nil, nil) }
        return (before, systemUnit(cgroupFile: cgroup))
    }

    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    static func startTime(of pid: Int32) -> UInt64? {
        guard pid > 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may contain spaces and ')').
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// The system unit of a `/proc/<pid>/cgroup` text, as systemd's
    /// `sd_pid_get_unit` defines it: the first component of the cgroup v2
    /// path that is not a slice. A process of a user's own service manager
    /// (`user.slice/user-1000.slice/user@1000.service/app.slice/x.service`)
    /// is in `user@1000.service`, never in the unit its user named.
    static func systemUnit(cgroupFile: String) -> String? {
        guard let line = cgroupFile.split(separator: "\n").first(where: { $0.hasPrefix("0::/") }) else { return nil }
        guard let unit = line.dropFirst(3).split(separator: "/").first(where: { !$0.hasSuffix(".slice") }) else {
            return nil
        }
        let name = String(unit)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex,
            ["service", "scope", "socket", "mount", "swap", "timer", "path", "target", "device", "automount"]
                .contains(String(name[name.index(after: dot)...]))
        else { return nil }
        return name
    }
}
