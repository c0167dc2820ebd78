import Foundation

/// The right to refresh one identity for a fleet of agents sharing one
/// store, until ``expiresAt`` (by the store's clock).
package struct Lease: Sendable, Hashable {
    package var name: IdentityName
    package var holder: String
    /// Grows by one with every grant of this name: a commit carries the
    /// fence it was granted, and a holder whose lease was taken over (or
    /// renewed by itself since) cannot commit with the old one.
    package var fence: Int64
    package var expiresAt: Date

    package init(name: IdentityName, holder: String, fence: Int64, expiresAt: Date) {
        self.name = name
        self.holder = holder
        self.fence = fence
        self.expiresAt = expiresAt
    }
}

/// What asking for the right to refresh an identity gave.
package enum RefreshClaim: Sendable, Hashable {
    /// This agent may refresh until the lease ends; its commit is fenced.
    case granted(Lease)
    /// Another agent holds the identity for about `remaining` more (by the
    /// store's clock, so hosts' clocks need not agree; nil: unknown). This
    /// agent must not call the provider for it: the holder's commit reaches
    /// it through the store.
    case heldElsewhere(holder: String?, remaining: Duration?)
}

/// One refresher per identity across agents that share a store (the fleet
/// store). The engine asks for a claim before a refresh token leaves the
/// host, re-reads the identity under it, and commits only through it; a
/// single host needs none of this (its engine is the only refresher).
package protocol RefreshExclusion: Sendable {
    /// Asks for the right to refresh `name`.
    func claim(_ name: IdentityName) async throws -> RefreshClaim

    /// Commits `result` only if `lease` is still the current grant and the
    /// identity is still at the result's expected generation.
    ///
    /// - Returns: the new generation, or nil when the lease was lost or the
    ///   identity moved on (the result must then be dropped: another agent
    ///   has refreshed, or will).
    /// - Throws: ``VaultError`` when the store cannot be reached; the
    ///   result may then be retried under a new claim.
    func commit(_ result: RefreshCommit, under lease: Lease) async throws -> Int64?

    /// Extends `lease`, keeping its fence, while its refresh runs; nil if it
    /// was already lost (expired or taken over).
    func renew(_ lease: Lease) async throws -> Lease?

    /// How often a held lease is renewed: well inside its lifetime, so a
    /// slow provider does not lose it, and a frozen or cut-off agent does.
    var renewalInterval: Duration { get }

    /// Ends `lease` early so another agent need not wait for it to expire.
    /// Best effort: an unreachable store lets it expire instead.
    func release(_ lease: Lease) async
}

/// An agent following a shared store: told when another agent changed an
/// identity, and when changes may have been missed.
package protocol StoreFollower: Sendable {
    /// `name` is now at `generation` in the store (or was removed).
    func storeChanged(_ name: IdentityName, generation: Int64) async
    /// Announcements may have been lost (the listener reconnected): compare
    /// everything with the store.
    func resynchronize() async
}

/// Refresh results the store could not take yet, kept on this host until
/// it does: the provider has already rotated the refresh token, so a result
/// lost with the process (a restart while the fleet store is down) would
/// lose the identity.
package protocol HeldResults: Sendable {
    /// Keeps `result` durably, replacing one held for the same identity.
    func keep(_ result: RefreshCommit) throws
    /// Forgets the result held for `name`, if any (committed, or spent).
    func drop(_ name: IdentityName)
    /// Every result held, as kept; unreadable ones are reported and left.
    func load() -> [RefreshCommit]
}
