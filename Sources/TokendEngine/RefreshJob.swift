import Foundation
import TokendCache
import TokendCore

/// One refresh, as handed from the scheduler to the code that performs it:
/// a copy of what it needs, so the I/O runs outside the engine actor.
struct RefreshJob: Sendable {
    var name: IdentityName
    var record: IdentityRecord
    var secrets: IdentitySecrets
    var provider: any TokenProvider
    /// A result obtained earlier that the vault did not store yet: commit
    /// it instead of calling the provider (its refresh token was rotated).
    var uncommitted: RefreshCommit?
    /// The entry this job was started for (see `Entry.incarnation`).
    var incarnation: UInt64
}

/// How a refresh ended.
enum RefreshResult: Sendable {
    /// Stored in the vault; `reauthenticated` when it came from silent
    /// session authentication after the refresh token was rejected.
    case committed(RefreshCommit, generation: Int64, reauthenticated: Bool)
    /// The identity was re-enrolled or removed meanwhile; the result was
    /// dropped. What the vault holds now, read as part of the flight (so
    /// nothing can start a refresh with the old secrets in between).
    case superseded(StoredIdentity?)
    /// The provider said no (or could not be reached).
    case failed(ProviderError)
    /// The provider rejected the session itself (silent authentication):
    /// every identity of its session group shares this fate.
    case sessionRejected(ProviderError)
    /// The provider answered but the vault refused the result; it is held
    /// in memory and committed on the next attempt.
    case uncommitted(RefreshCommit, String)
    /// The vault could not record the intent; the provider was not called.
    case notStarted(String)
    /// Fleet store: another agent holds the identity (for about `remaining`);
    /// the provider was not called. Its commit reaches this agent through
    /// the store's notifications.
    case heldElsewhere(holder: String?, remaining: Duration?)
    /// Fleet store: the identity is no longer in the store (removed by
    /// another host); the provider was not called.
    case removedElsewhere

    /// The metrics label: `success`, or the failure's class.
    var outcome: String {
        switch self {
        case .committed(_, _, let reauthenticated): reauthenticated ? "success_reauthenticated" : "success"
        case .superseded: "superseded"
        case .failed(let error), .sessionRejected(let error): error.code
        case .uncommitted: "vault_error"
        case .notStarted: "vault_error"
        case .heldElsewhere: "held_elsewhere"
        case .removedElsewhere: "removed"
        }
    }
}
