import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// Who may do what: admins for the admin verbs and every identity; an
/// identity's allow rules for everyone else. Default deny.
package final class AccessPolicy: Sendable {
    /// Extra admins from the configuration (root and the agent's own uid
    /// are always admins).
    package struct Admins: Sendable, Hashable {
        package var uids: Set<UInt32>
        package var groups: [String]

        package init(uids: Set<UInt32> = [], groups: [String] = []) {
            self.uids = uids
            self.groups = groups
        }
    }

    private let admins: Mutex<Admins>
    /// Fired (and replaced) whenever the policy changes, so open `WATCH`
    /// streams decide again at once instead of at their next token.
    private let changed = Mutex(ShutdownSignal())
    private let agentUID: UInt32
    private let accounts = AccountDatabase()

    package init(admins: Admins = Admins(), agentUID: UInt32 = getuid()) {
        self.admins = Mutex(admins)
        self.agentUID = agentUID
    }

    /// Replaces the configured admins (config reload).
    package func setAdmins(_ new: Admins) {
        admins.withLock { $0 = new }
        policyChanged()
    }

    /// Wakes every ``nextChange()`` waiter (a reload, even one that left
    /// the admins alone, may have changed group files or identities' rules).
    package func policyChanged() {
        accounts.forget()
        let fired = changed.withLock { signal -> ShutdownSignal in
            defer { signal = ShutdownSignal() }
            return signal
        }
        fired.fire()
    }

    /// Returns at the next change of the policy (or when cancelled).
    func nextChange() async {
        await changed.withLock { $0 }.wait()
    }

    package func isAdmin(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == agentUID { return true }
        let configured = admins.withLock { $0 }
        if configured.uids.contains(peer.uid) { return true }
        guard !configured.groups.isEmpty else { return false }
        let peerGroups = accounts.groups(ofUID: peer.uid).union([peer.gid])
        return configured.groups.contains { name in
            accounts.gid(ofGroup: name).map(peerGroups.contains) ?? false
        }
    }

    /// Whether `peer` may read an identity with these allow rules.
    package func mayRead(_ rules: [String], peer: PeerCredentials) -> Bool {
        mayRead(rules.lazy.compactMap(AccessRule.init), peer: peer)
    }

    /// The same, for rules already parsed (a rule that did not parse allows
    /// no one, so it is simply absent).
    package func mayRead(_ rules: some Sequence<AccessRule>, peer: PeerCredentials) -> Bool {
        if isAdmin(peer) { return true }
        var peerGroups: Set<UInt32>? = nil
        func groups() -> Set<UInt32> {
            if let peerGroups { return peerGroups }
            let found = accounts.groups(ofUID: peer.uid).union([peer.gid])
            peerGroups = found
            return found
        }
        for rule in rules {
            switch rule {
            case .uid(let uid):
                if peer.uid == uid { return true }
            case .user(let name):
                if accounts.uid(ofUser: name) == peer.uid { return true }
            case .gid(let gid):
                if groups().contains(gid) { return true }
            case .group(let name):
                if let gid = accounts.gid(ofGroup: name), groups().contains(gid) { return true }
            case .unit(let unit):
                if Self.peerRuns(in: unit, peer: peer) { return true }
            }
        }
        return false
    }

    /// The unit was captured when the peer connected (see
    /// ``PeerCredentials/read(socket:process:)``); nothing is read from `/proc` now,
    /// when the pid may belong to another process.
    private static func peerRuns(in unit: String, peer: PeerCredentials) -> Bool {
        peer.unit == unit
    }
}
