/// The agent's durable store of identities and their secrets.
///
/// The engine talks only to this protocol, so a second backend (a shared
/// PostgreSQL vault with per-identity leases) can be added without touching
/// it. Every method either completes durably or throws a ``VaultError``.
package protocol VaultStore: Sendable {
    /// Loads every identity with its secrets decrypted. An identity whose
    /// values fail to open comes back with state ``IdentityState/corrupt``,
    /// no secrets and a `lastError`; the others are unaffected.
    func loadAll() async throws -> [StoredIdentity]

    /// Loads one identity, or nil if it does not exist.
    func identity(named name: IdentityName) async throws -> StoredIdentity?

    /// Identity records (no secrets) in name order, for `LIST` and the CLI.
    func list(prefix: String?, after: IdentityName?, limit: Int) async throws -> [IdentityRecord]

    /// The records of identities declared in the configuration file and of
    /// those named in `names`, for bringing the declared identities in step
    /// with the configuration without reading every record.
    func declaredRecords(including names: [IdentityName]) async throws -> [IdentityRecord]

    /// Creates the identity or replaces its secrets; returns its generation.
    @discardableResult
    func enroll(_ enrollment: Enrollment) async throws -> Int64

    /// Enrolls many identities in one transaction (imports, tests, benchmarks).
    func enroll(batch: [Enrollment]) async throws

    /// Changes who may read an identity and when it refreshes, keeping its
    /// secrets and generation.
    func updatePolicy(_ name: IdentityName, allowRules: [String], refreshAt: Double?) async throws

    /// Removes the identity and all its secrets; false if it did not exist.
    @discardableResult
    func remove(_ name: IdentityName) async throws -> Bool

    /// Records that a refresh of `name` at `generation` is about to reach the
    /// provider. Must be durable before the provider call.
    func recordIntent(_ intent: RefreshIntent) async throws

    /// Records several intents in one transaction (group commit). Intents of
    /// identities that no longer exist are skipped.
    func recordIntents(batch: [RefreshIntent]) async throws

    /// Drops the intent of a refresh that ended without a result to commit.
    func clearIntent(_ name: IdentityName) async throws

    /// Intents left by refreshes whose results were never committed.
    func pendingIntents() async throws -> [RefreshIntent]

    /// Makes a refresh result durable in one transaction: new access token,
    /// expiry, rotated refresh token (keeping the used one as previous),
    /// generation + 1, intent cleared. Returns the new generation.
    @discardableResult
    func commit(_ result: RefreshCommit) async throws -> Int64

    /// Commits several results in one transaction (group commit). Each entry
    /// of the answer is the new generation, or nil for a generation conflict.
    func commit(batch: [RefreshCommit]) async throws -> [Int64?]

    /// Records a state change that carries no new secret (a failure, a
    /// `reauth_required`), with a secret-free error text.
    func updateState(_ name: IdentityName, to state: IdentityState, lastError: String?) async throws

    /// Enrolls `enrollment` with the session of `source` (SSO across apps),
    /// in one transaction: the session id is copied inside the vault, never
    /// handed out. Both identities then belong to one session group.
    ///
    /// - Returns: the new identity's generation and the group.
    /// - Throws: `.notFound` if `source` does not exist or has no session.
    func joinSession(_ enrollment: Enrollment, from source: IdentityName) async throws -> (generation: Int64, group: String)
}

extension VaultStore {
    /// Over every record; a store that can select them does better.
    package func declaredRecords(including names: [IdentityName]) async throws -> [IdentityRecord] {
        let named = Set(names)
        return try await list(prefix: nil, after: nil, limit: Int(Int32.max)).filter {
            $0.fromConfiguration || named.contains($0.name)
        }
    }
}
