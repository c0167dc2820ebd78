import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// User and group lookups (NSS: /etc/passwd, /etc/group, ...), with a short
/// cache so a busy socket does not read /etc/passwd or /etc/group for
/// every request.
final class AccountDatabase: Sendable {
    private struct Cached {
        var groups: Set<UInt32>
        var expires: ContinuousClock.Instant
    }

    private struct CachedID {
        var id: UInt32?
        var expires: ContinuousClock.Instant
    }

    private let groupsByUID = Mutex<[UInt32: Cached]>([:])
    /// Names from allow rules and the admin list (a bounded set: the
    /// configuration's and the enrollments'), unknown ones included, so a
    /// `user:` rule costs a lookup per 30 s, not an NSS call per `GET`.
    private let userIDs = Mutex<[String: CachedID]>([:])
    private let groupIDs = Mutex<[String: CachedID]>([:])
    /// Bumped by ``forget()``: a lookup that began before it does not
    /// store its (possibly stale) answer after it.
    private let epoch = Atomic<UInt64>(0)
    private let lifetime: Duration

    init(cacheLifetime: Duration = .seconds(30)) {
        lifetime = cacheLifetime
    }

    /// The user's primary group and every group listing the user as member.
    func groups(ofUID uid: UInt32) -> Set<UInt32> {
        let now = ContinuousClock.now
        if let cached = groupsByUID.withLock({ $0[uid] }), cached.expires > now { return cached.groups }
        let started = epoch.load(ordering: .sequentiallyConsistent)
        let groups = Self.lookupGroups(uid: uid)
        groupsByUID.withLock { table in
            if epoch.load(ordering: .sequentiallyConsistent) == started { table[uid] = Cached(groups: groups, expires: now + lifetime) }
        }
        return groups
    }

    /// Drops every cached answer (a reload: the operator may have just
    /// added the user a rule names).
    func forget() {
        epoch.add(1, ordering: .sequentiallyConsistent)
        groupsByUID.withLock { $0 = [:] }
        userIDs.withLock { $0 = [:] }
        groupIDs.withLock { $0 = [:] }
    }

    /// The uid of `name` (or `name` itself if it is a number).
    func uid(ofUser name: String) -> UInt32? {
        cached(name, in: userIDs, lookup: Accounts.uid(ofUser:))
    }

    /// The gid of `name` (or `name` itself if it is a number).
    func gid(ofGroup name: String) -> UInt32? {
        cached(name, in: groupIDs, lookup: Accounts.gid(ofGroup:))
    }

    private func cached(_ name: String, in table: borrowing Mutex<[String: CachedID]>, lookup: (String) -> UInt32?) -> UInt32? {
        let now = ContinuousClock.now
        if let hit = table.withLock({ $0[name] }), hit.expires > now { return hit.id }
        let started = epoch.load(ordering: .sequentiallyConsistent)
        let id = lookup(name)
        table.withLock { table in
            if epoch.load(ordering: .sequentiallyConsistent) == started { table[name] = CachedID(id: id, expires: now + lifetime) }
        }
        return id
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
