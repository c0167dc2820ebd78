import Foundation
import Synchronization
import TokendCore

/// A real vault behind a switch that makes it refuse refresh commits, as a
/// full disk or an I/O error would: everything else passes through.
package final class RefusingVault: VaultStore, Sendable {
    package let base: any VaultStore
    private let refusing = Mutex(false)

    package init(_ base: any VaultStore) {
        self.base = base
    }

    package func refuseCommits(_ refuse: Bool) { refusing.withLock { $0 = refuse } }

    private func check() throws {
        if refusing.withLock({ $0 }) { throw VaultError(.storage, "disk I/O error (simulated)") }
    }

    package func loadAll() async throws -> [StoredIdentity] { try await base.loadAll() }
    package func identity(named name: IdentityName) async throws -> StoredIdentity? { try await base.identity(named: name) }
    package func list(prefix: String?, after: IdentityName?, limit: Int) async throws -> [IdentityRecord] {
        try await base.list(prefix: prefix, after: after, limit: limit)
    }
    package func enroll(_ enrollment: Enrollment) async throws -> Int64 { try await base.enroll(enrollment) }
    package func enroll(batch: [Enrollment]) async throws { try await base.enroll(batch: batch) }
    package func updatePolicy(_ name: IdentityName, allowRules: [String], refreshAt: Double?) async throws {
        try await base.updatePolicy(name, allowRules: allowRules, refreshAt: refreshAt)
    }
    package func remove(_ name: IdentityName) async throws -> Bool { try await base.remove(name) }
    package func recordIntent(_ intent: RefreshIntent) async throws { try await base.recordIntent(intent) }
    package func recordIntents(batch: [RefreshIntent]) async throws { try await base.recordIntents(batch: batch) }
    package func clearIntent(_ name: IdentityName) async throws { try await base.clearIntent(name) }
    package func pendingIntents() async throws -> [RefreshIntent] { try await base.pendingIntents() }
    package func commit(_ result: RefreshCommit) async throws -> Int64 {
        try check()
        return try await base.commit(result)
    }
    package func commit(batch: [RefreshCommit]) async throws -> [Int64?] {
        try check()
        return try await base.commit(batch: batch)
    }
    package func joinSession(_ enrollment: Enrollment, from source: IdentityName) async throws -> (generation: Int64, group: String) {
        try await base.joinSession(enrollment, from: source)
    }
    package func updateState(_ name: IdentityName, to state: IdentityState, lastError: String?) async throws {
        try await base.updateState(name, to: state, lastError: lastError)
    }
}
