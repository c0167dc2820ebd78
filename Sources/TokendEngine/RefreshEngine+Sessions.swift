import Foundation
import Logging
import Metrics
import TokendCache
import TokendCore

/// Shared sessions (SSO across apps): identities of one Transmit tenant
/// that share a session live and die together.
extension RefreshEngine {
    /// One fate per session: when one identity learns that its session is
    /// dead, every identity of the group needs re-enrollment at once, and
    /// their WATCH clients hear of it.
    func endSession(_ group: String, learnedBy source: IdentityName) async {
        let members = entries.filter { $0.key != source && $0.value.record.sessionGroup == group && $0.value.condition == .active }
        guard !members.isEmpty else { return }
        logger.warning(
            "the provider rejected a shared session; every identity of it needs re-enrollment",
            metadata: [
                "tokend.identity": "\(source)", "tokend.session": "\(group)",
                "tokend.session.identities": "\(members.keys.map(\.rawValue).sorted().joined(separator: ","))",
            ])
        for (member, var entry) in members {
            entry.condition = .reauthRequired
            entry.record.state = .reauthRequired
            entry.record.lastError = "session_ended"
            entry.lastErrorCode = "session_ended"
            entry.lastErrorMessage = "the session shared with \(source) was rejected"
            entry.failures = max(entry.failures, 1)
            entry.version &+= 1
            entry.nextRefresh = nil
            entries[member] = entry
            cache.publish(entry.published)
            do {
                try await vault.updateState(member, to: .reauthRequired, lastError: "session_ended")
            } catch {
                logger.error("cannot record reauth_required in the vault", metadata: ["tokend.identity": "\(member)", "tokend.error": "\(error)"])
            }
        }
    }

    /// Ends a session group at the agent's side (after `REMOVE logout=all`
    /// ended it at the provider): every remaining member needs re-enrollment.
    package func sessionEnded(_ group: String, by source: IdentityName) async {
        await endSession(group, learnedBy: source)
    }

    /// `source` now shares its session with others under `group`.
    func sessionShared(_ source: IdentityName, group: String) {
        guard var entry = entries[source] else { return }
        entry.record.sessionGroup = group
        entries[source] = entry
        cache.publish(entry.published)
    }

    /// The members of a session group, for `STATUS` and `REMOVE`.
    package func sessionMembers(_ group: String) -> [IdentityName] {
        entries.filter { $0.value.record.sessionGroup == group }.keys.sorted()
    }
}
