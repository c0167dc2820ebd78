import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// User and group lookups (NSS: /etc/passwd, /etc/group, ...), with a short
/// cache so a busy socket does not read /etc/group for every request.
final class AccountDatabase: Sendable {
    private struct Cached {
        var groups: Set<UInt32>
        var expires: ContinuousClock.Instant
    }

    private let groupsByUID = Mutex<[UInt32: Cached]>([:])
    private let lifetime: Duration

    init(cacheLifetime: Duration = .seconds(30)) {
        lifetime = cacheLifetime
    }

    /// The user's primary group and every group listing the user as member.
    func groups(ofUID uid: UInt32) -> Set<UInt32> {
        let now = ContinuousClock.now
        if let cached = groupsByUID.withLock({ $0[uid] }), cached.expires > now { return cached.groups }
        let groups = Self.lookupGroups(uid: uid)
        groupsByUID.withLock { $0[uid] = Cached(groups: groups, expires: now + lifetime) }
        return groups
    }

    private static func lookupGroups(uid: UInt32) -> Set<UInt32> {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return []
        }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, entry.pw_gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, entry.pw_gid, &list, &count)
        }
        return Set(list.prefix(Int(max(count, 0)))).union([entry.pw_gid])
    }
}
