import Foundation
import Logging
import TokendCache
import TokendCore

/// A change to the identities that was refused, with what kind of refusal
/// it is (the socket server turns the kind into its error code).
package struct IdentityChangeError: Error, Sendable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable {
        /// The request breaks a rule; nothing was written.
        case invalid
        case notFound
        /// The provider failed (a logout); nothing was removed.
        case providerFailed
        /// The vault refused the write; details are in the agent's log.
        case storage
    }

    package let kind: Kind
    package let message: String
    package var description: String { message }

    package init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}

/// What bringing the declared identities in step with the configuration did.
package struct DeclarationChanges: Sendable, Hashable {
    package var added: [IdentityName] = []
    /// Enrolled anew (provider or grant changed): new secrets.
    package var updated: [IdentityName] = []
    /// Only allow rules or refresh point changed: same secrets, same
    /// generation, and a refresh in flight still lands.
    package var policyChanged: [IdentityName] = []
    package var removed: [IdentityName] = []

    package var isEmpty: Bool { added.isEmpty && updated.isEmpty && policyChanged.isEmpty && removed.isEmpty }
}

/// The engine is the one owner of identities: every change goes through
/// here, writes the vault first and then the engine's memory and the
/// cache, one change at a time.
extension RefreshEngine {
    /// Enrolls `enrollment` (or re-enrolls the name: new secrets, next
    /// generation); returns the generation.
    package func enroll(_ enrollment: Enrollment) async throws(IdentityChangeError) -> Int64 {
        do { try enrollment.validate() } catch { throw IdentityChangeError(.invalid, error.message) }
        guard let provider = providers[enrollment.provider] else {
            throw IdentityChangeError(.invalid, "unknown provider \(enrollment.provider)")
        }
        if enrollment.grant == .session && !provider.supportsSessionAuthentication {
            throw IdentityChangeError(.invalid, "provider \(enrollment.provider) does not support the session grant")
        }
        return try await changing("enrollment", of: enrollment.name) {
            let generation = try await vault.enroll(enrollment)
            try await load(enrollment.name)
            return generation
        }
    }

    /// Enrolls `enrollment` with the session of `source` (another app of
    /// the same Transmit tenant): the session id is copied inside the
    /// vault and never leaves it.
    package func join(_ enrollment: Enrollment, from source: IdentityName) async throws(IdentityChangeError) -> Int64 {
        do {
            try enrollment.validate()
        } catch where error.field != .sessionID && error.field != .refreshToken {
            // (Its session is the source's: no session id or refresh token of its own.)
            throw IdentityChangeError(.invalid, error.message)
        } catch {}
        guard let provider = providers[enrollment.provider] else {
            throw IdentityChangeError(.invalid, "unknown provider \(enrollment.provider)")
        }
        return try await changing("enrollment", of: enrollment.name) {
            guard let original = try await vault.identity(named: source) else {
                throw IdentityChangeError(.notFound, "no identity \(source)")
            }
            guard original.secrets.sessionID != nil else {
                throw IdentityChangeError(.invalid, "identity \(source) has no session to share")
            }
            guard let scope = provider.sessionScope, scope == providers[original.record.provider]?.sessionScope else {
                throw IdentityChangeError(
                    .invalid,
                    "providers \(enrollment.provider) and \(original.record.provider) are not apps of one Transmit tenant "
                        + "(the same base_url); a session cannot be shared between them")
            }
            // Only what a join may set: the session comes from the source,
            // inside the vault; any token or secret in the request is dropped.
            let joining = Enrollment(
                name: enrollment.name, provider: enrollment.provider, grant: .session,
                allowRules: enrollment.allowRules, refreshAt: enrollment.refreshAt)
            let (generation, group) = try await vault.joinSession(joining, from: source)
            sessionShared(source, group: group)
            try await load(enrollment.name)
            logger.info(
                "identity joined a shared session",
                metadata: ["tokend.identity": "\(enrollment.name)", "tokend.session.from": "\(source)", "tokend.session": "\(group)"])
            return generation
        }
    }

    /// Removes `name`, ending its provider session first if `logout` asks.
    /// Returns false if there was no such identity.
    package func remove(_ name: IdentityName, logout: Logout) async throws(IdentityChangeError) -> Bool {
        // The logout comes first and outside the one-change-at-a-time lock:
        // a slow (or hostile) provider must not hold up every other change.
        if logout != .none {
            guard try await endSession(of: name, logout: logout) else { return false }
        }
        return try await changing("removal", of: name) {
            guard let stored = try await vault.identity(named: name) else { return false }
            var others: [IdentityName] = []
            if let group = stored.record.sessionGroup { others = sessionMembers(group).filter { $0 != name } }
            let removed = try await vault.remove(name)
            forget(name)
            if logout == .sharedSession, let group = stored.record.sessionGroup, !others.isEmpty {
                await sessionEnded(group, by: name)
                logger.warning(
                    "shared session ended by an admin; its other identities need re-enrollment",
                    metadata: ["tokend.identity": "\(name)", "tokend.session.identities": "\(others.map(\.rawValue).joined(separator: ","))"])
            }
            return removed
        }
    }

    /// Ends `name`'s provider session before its removal; false if there is
    /// no such identity. A session shared with other identities is ended
    /// only with `logout=all`.
    private func endSession(of name: IdentityName, logout: Logout) async throws(IdentityChangeError) -> Bool {
        try await storing("removal", of: name) {
            guard let stored = try await vault.identity(named: name) else { return false }
            if logout == .session, let group = stored.record.sessionGroup {
                let others = sessionMembers(group).filter { $0 != name }
                if !others.isEmpty {
                    throw IdentityChangeError(
                        .invalid,
                        "the session of \(name) is shared with \(others.map(\.rawValue).joined(separator: ", ")); "
                            + "logout=all ends it for all of them")
                }
            }
            guard let session = stored.secrets.sessionID else { return true }
            guard let provider = providers[stored.record.provider] else {
                throw IdentityChangeError(.invalid, "provider \(stored.record.provider) is not configured; cannot log out")
            }
            do {
                try await provider.endSession(session)
            } catch {
                // The session is still alive: keep the identity, so the
                // operator can retry rather than lose the handle on it.
                let message = (error as? ProviderError)?.message ?? "the provider call failed"
                throw IdentityChangeError(.providerFailed, "logout failed, identity kept: \(message)")
            }
            return true
        }
    }

    /// Brings the identities the configuration declares in step with it:
    /// creates the missing ones, updates allow rules and refresh points,
    /// enrolls anew those whose provider or grant changed, removes declared
    /// ones the file dropped. Identities enrolled at run time are left alone.
    @discardableResult
    package func declare(_ declared: [Enrollment]) async throws(IdentityChangeError) -> DeclarationChanges {
        for enrollment in declared {
            do { try enrollment.validate() } catch { throw IdentityChangeError(.invalid, "\(enrollment.name): \(error.message)") }
        }
        let changes = try await changing("sync of the configured identities", of: nil) {
            try await applyDeclared(declared)
        }
        if !changes.isEmpty {
            logger.info(
                "configured identities applied",
                metadata: [
                    "tokend.added": "\(changes.added.count)",
                    "tokend.updated": "\(changes.updated.count + changes.policyChanged.count)",
                    "tokend.removed": "\(changes.removed.count)",
                ])
        }
        return changes
    }

    /// A reload: new providers (identities that failed for want of theirs
    /// are retried), then the declared identities.
    package func reconfigure(providers: [String: any TokenProvider], declared: [Enrollment]) async throws(IdentityChangeError) {
        replaceProviders(providers)
        try await declare(declared)
    }

    private func applyDeclared(_ declared: [Enrollment]) async throws -> DeclarationChanges {
        var changes = DeclarationChanges()
        let existing = Dictionary(
            try await vault.declaredRecords(including: declared.map(\.name)).map { ($0.name, $0) },
            uniquingKeysWith: { first, _ in first })
        for identity in declared {
            let name = identity.name
            if let record = existing[name], record.provider == identity.provider, record.grant == identity.grant {
                if record.allowRules != identity.allowRules || record.refreshAt != identity.refreshAt {
                    try await vault.updatePolicy(name, allowRules: identity.allowRules, refreshAt: identity.refreshAt)
                    policyUpdated(name, allowRules: identity.allowRules, refreshAt: identity.refreshAt)
                    changes.policyChanged.append(name)
                }
                continue
            }
            // Agents sharing a fleet store read the same configuration and
            // may all find the identity missing at once: only the one
            // holding its claim enrolls, after looking again, so a second
            // enrollment cannot put back a refresh token the first one's
            // refresh already spent.
            let lease = try await claimForEnrollment(name)
            if let lease {
                let now: IdentityRecord?
                do {
                    now = try await vault.identity(named: name)?.record
                } catch {
                    await exclusion?.release(lease)
                    throw error
                }
                if let now, now.provider == identity.provider, now.grant == identity.grant {
                    await exclusion?.release(lease)
                    continue
                }
            }
            if let record = existing[name] {
                logger.warning(
                    "identity's provider or grant changed in the configuration; enrolling it anew",
                    metadata: ["tokend.identity": "\(name)", "tokend.provider": "\(record.provider) -> \(identity.provider)"])
            }
            do {
                try await vault.enroll(identity)
            } catch {
                if let lease { await exclusion?.release(lease) }
                throw error
            }
            if let lease { await exclusion?.release(lease) }
            try await load(name)
            if existing[name] == nil { changes.added.append(name) } else { changes.updated.append(name) }
        }
        let declaredNames = Set(declared.map(\.name))
        let dropped = existing.values.filter { $0.fromConfiguration && !declaredNames.contains($0.name) }
        if exclusion != nil {
            // A fleet store is shared by hosts whose files change one at a
            // time (a rolling update): a host still on an older file must
            // not remove an identity a newer one declares, whose next
            // enrollment would put back a refresh token already spent.
            if !dropped.isEmpty {
                logger.notice(
                    "identities no longer in this host's configuration are kept in the fleet store; remove them with tokend remove",
                    metadata: ["tokend.identities": "\(dropped.map(\.name.rawValue).sorted().joined(separator: ","))"])
            }
            return changes
        }
        for record in dropped {
            try await vault.remove(record.name)
            forget(record.name)
            changes.removed.append(record.name)
        }
        return changes
    }

    /// The claim of `name` before a declared enrollment in a fleet store
    /// (nil on a single host). Another agent holding it is enrolling or
    /// refreshing it: wait for its lease, a bounded number of times.
    private func claimForEnrollment(_ name: IdentityName) async throws -> Lease? {
        guard let exclusion else { return nil }
        // Bounded by about two leases: the changes lock is held meanwhile,
        // and a resynchronization with the store waits for it.
        let deadline = ContinuousClock.now + exclusion.leaseLifetime * 2 + .seconds(1)
        while ContinuousClock.now < deadline {
            switch try await exclusion.claim(name, forEnrollment: true) {
            case .granted(let lease): return lease
            case .heldElsewhere(_, let remaining):
                try await Task.sleep(for: min(max(remaining ?? .seconds(1), .milliseconds(100)), .seconds(5)))
            }
        }
        throw VaultError(.storage, "identity \(name) stayed claimed by another agent; its enrollment was not written")
    }

    /// Runs one change to the identities, alone: its own refusals pass as
    /// they are; a storage failure is logged and reported without its
    /// details (which stay in the agent's log).
    private func changing<T>(
        _ what: String, of name: IdentityName?, _ body: () async throws -> T
    ) async throws(IdentityChangeError) -> T {
        await identityChanges.lock()
        defer { identityChanges.unlock() }
        return try await storing(what, of: name, body)
    }

    /// Runs `body`: its own refusals pass as they are; any other failure is
    /// the vault's, logged and reported without its details.
    private func storing<T>(
        _ what: String, of name: IdentityName?, _ body: () async throws -> T
    ) async throws(IdentityChangeError) -> T {
        do {
            return try await body()
        } catch let error as IdentityChangeError {
            throw error
        } catch {
            var metadata: Logger.Metadata = ["tokend.error": "\(error)"]
            if let name { metadata["tokend.identity"] = "\(name)" }
            logger.error("\(what) failed", metadata: metadata)
            throw IdentityChangeError(.storage, "the vault refused the \(what); see the agent's log")
        }
    }

    /// Hands a newly written identity to memory, as the vault has it.
    private func load(_ name: IdentityName) async throws {
        guard loaded else { return }
        guard let stored = try await vault.identity(named: name) else {
            throw IdentityChangeError(.storage, "identity \(name) vanished after enrollment")
        }
        enrolled(stored)
    }

    private func forget(_ name: IdentityName) {
        guard loaded else { return }
        removed(name)
    }
}
