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
        letGo(name)
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
        letGo(name)
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

    /// Holds `commit` until the vault takes it: in memory, and on this
    /// host's disk when there is a place for it.
    func hold(_ commit: RefreshCommit) {
        uncommitted[commit.name] = commit
        guard let held else { return }
        do {
            try held.keep(commit)
        } catch {
            logger.error(
                "cannot keep a refresh result on this host's disk; it is held in memory only",
                metadata: ["tokend.identity": "\(commit.name)", "tokend.error": "\(error)"])
        }
    }

    /// Forgets the result held for `name`: committed, or spent because the
    /// identity moved on.
    func letGo(_ name: IdentityName) {
        guard uncommitted.removeValue(forKey: name) != nil else { return }
        held?.drop(name)
    }

    /// At start: results a previous run could not commit, offered to the
    /// vault first. One for a generation the vault has left is spent.
    func takeHeldResults() -> Int {
        guard let held else { return 0 }
        var taken = 0
        for commit in held.load() {
            let name = commit.name
            guard let entry = entries[name] else {
                // Removed from the vault: nothing left for it to land on.
                held.drop(name)
                logger.info("dropped a held refresh result: the identity is gone", metadata: ["tokend.identity": "\(name)"])
                continue
            }
            guard entry.record.generation <= commit.expectedGeneration else {
                held.drop(name)
                logger.info("dropped a held refresh result: the identity moved on", metadata: ["tokend.identity": "\(name)"])
                continue
            }
            guard entry.condition == .active, entry.record.generation == commit.expectedGeneration else {
                // (Corrupt: a key problem, say.) Kept on disk: it may be the
                // only copy of the rotated token once the row opens again.
                logger.error(
                    "a held refresh result waits: its identity does not load",
                    metadata: ["tokend.identity": "\(name)"])
                continue
            }
            uncommitted[name] = commit
            // (Its intent, still in the vault, may have counted it already.)
            if !entry.recovering { taken += 1 }
            entries[name]?.recovering = true
            enqueue(name, urgent: true)
        }
        return taken
    }
}
