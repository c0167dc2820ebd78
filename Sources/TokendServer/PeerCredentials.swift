import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a connection, from the kernel (`SO_PEERCRED`),
/// read once at accept.
package struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    package var pid: Int32
    package var uid: UInt32
    package var gid: UInt32
    /// The peer's start time (`/proc/<pid>/stat` field 22) at accept, so a
    /// later `/proc/<pid>` read can tell if the pid was reused.
    package var startTime: UInt64?

    package init(pid: Int32, uid: UInt32, gid: UInt32, startTime: UInt64? = nil) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.startTime = startTime
    }

    package var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    /// `struct ucred` (Swift's Glibc module hides it behind `_GNU_SOURCE`).
    private struct UCred: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// Reads the credentials of an accepted Unix socket.
    static func read(from channel: any Channel) async throws -> PeerCredentials {
        guard let provider = channel as? any SocketOptionProvider else {
            throw ChannelError.operationUnsupported
        }
        let raw: UCred = try await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)
        ).get()
        return PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid, startTime: ProcessInfoReader.startTime(of: raw.pid))
    }
}

/// Small readers of `/proc/<pid>`.
enum ProcessInfoReader {
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

    /// The systemd unit a process runs in: the last `.service` or `.scope`
    /// component of its cgroup v2 path (`0::/system.slice/foo.service`).
    static func unit(of pid: Int32) -> String? {
        guard pid > 0, let cgroup = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        for line in cgroup.split(separator: "\n") where line.hasPrefix("0::") {
            let components = line.dropFirst(3).split(separator: "/")
            if let unit = components.last(where: { $0.hasSuffix(".service") || $0.hasSuffix(".scope") }) {
                return String(unit)
            }
        }
        return nil
    }
}
