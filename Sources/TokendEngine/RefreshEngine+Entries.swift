import Foundation
import TokendCache
import TokendCore

/// The engine's memory of identities, kept in step with the vault by the
/// identity changes (RefreshEngine+Identities), which call these after
/// each vault write.
extension RefreshEngine {
    /// Adds a newly enrolled identity, or replaces one that was re-enrolled.
    func enrolled(_ identity: StoredIdentity) {
        let name = identity.record.name
        var entry = newEntry(identity)
        // A result held for the old secrets must never be replayed onto new ones.
        uncommitted[name] = nil
        if let old = entries[name] {
            entry.waiters = old.waiters
            entry.phase = old.phase
            entry.version = old.version + 1
            entry.lastStartedSinceEpoch = old.lastStartedSinceEpoch
        }
        // The old refresh still runs (removed, then enrolled again): the new
        // secrets wait for it to end, so two refreshes never overlap.
        if orphanedFlights.contains(name) { entry.phase = .inFlight }
        entries[name] = entry
        cache.publish(entry.published)
        if entry.phase != .idle { return }
        if identity.secrets.accessToken == nil {
            enqueue(name, urgent: true)
        } else {
            plan(name)
        }
    }

    /// New allow rules or refresh point for an identity (a reload): its
    /// secrets, generation and any refresh in flight are left alone.
    func policyUpdated(_ name: IdentityName, allowRules: [String], refreshAt: Double?) {
        guard var entry = entries[name] else { return }
        entry.record.allowRules = allowRules
        let replan = entry.record.refreshAt != refreshAt
        entry.record.refreshAt = refreshAt
        entries[name] = entry
        cache.publish(entry.published)
        if replan, entry.condition == .active, entry.phase == .idle, entry.secrets.accessToken != nil { plan(name) }
    }

    /// Forgets a removed identity; its waiters learn it is gone.
    func removed(_ name: IdentityName) {
        uncommitted[name] = nil
        guard let entry = entries.removeValue(forKey: name) else { return }
        if entry.phase == .inFlight { orphanedFlights.insert(name) }
        cache.remove(name)
        for waiter in entry.waiters { waiter.resume(returning: .notFound) }
    }

    /// Replaces the providers (config reload) and retries identities whose
    /// provider was misconfigured or missing.
    func replaceProviders(_ providers: [String: any TokenProvider]) {
        self.providers = providers
        blockedProviders.removeAll()
        for (name, entry) in entries where entry.condition == .active && entry.phase == .idle {
            if entry.failures > 0 || entry.lastErrorCode == "unknown_provider" { enqueue(name, urgent: false) }
        }
        wake.signal()
    }

    /// A fresh entry for a loaded or enrolled identity, with its own incarnation.
    func newEntry(_ identity: StoredIdentity) -> Entry {
        nextIncarnation &+= 1
        var entry = Entry(record: identity.record, secrets: identity.secrets)
        entry.incarnation = nextIncarnation
        return entry
    }
}
