import Foundation
import TokendCache
import TokendCore

/// Where an identity's refresh stands; one refresh at a time.
enum RefreshPhase: Equatable {
    /// Nothing queued or running (a timer may be planned).
    case idle
    /// In its provider's ready queue, waiting for a slot.
    case queued
    /// A refresh is running.
    case inFlight
}

/// A caller waiting for the refresh in flight.
struct RefreshWaiter {
    let id: UInt64
    let continuation: CheckedContinuation<RefreshOutcome, Never>

    func resume(returning outcome: RefreshOutcome) {
        continuation.resume(returning: outcome)
    }
}

/// One identity's state in the engine. Its fields live in one object
/// shared by reference (copied on write), so the engine's table holds
/// a pointer per bucket: at 100,000 identities a table of whole
/// entries (about 400 bytes, in a table sized to the next power of two
/// above 4/3 of the count) held over 100 MB, most of it empty buckets.
struct EngineEntry {
    private final class Storage {
        var fields: EngineEntryFields

        init(_ fields: EngineEntryFields) {
            self.fields = fields
        }
    }

    private var storage: Storage

    init(record: IdentityRecord, secrets: IdentitySecrets) {
        storage = Storage(EngineEntryFields(record: record, secrets: secrets))
    }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.fields) }
    }

    // Spelled out rather than through a key path: a key path into a
    // type generic over the clock is built at run time on each use.
    var record: IdentityRecord {
        get { storage.fields.record }
        _modify { makeUnique(); yield &storage.fields.record }
    }
    var secrets: IdentitySecrets {
        get { storage.fields.secrets }
        _modify { makeUnique(); yield &storage.fields.secrets }
    }
    var condition: TokenSnapshot.Condition {
        get { storage.fields.condition }
        _modify { makeUnique(); yield &storage.fields.condition }
    }
    var version: UInt64 {
        get { storage.fields.version }
        _modify { makeUnique(); yield &storage.fields.version }
    }
    var failures: Int {
        get { storage.fields.failures }
        _modify { makeUnique(); yield &storage.fields.failures }
    }
    var lastErrorCode: String? {
        get { storage.fields.lastErrorCode }
        _modify { makeUnique(); yield &storage.fields.lastErrorCode }
    }
    var lastErrorMessage: String? {
        get { storage.fields.lastErrorMessage }
        _modify { makeUnique(); yield &storage.fields.lastErrorMessage }
    }
    var retryAt: Date? {
        get { storage.fields.retryAt }
        _modify { makeUnique(); yield &storage.fields.retryAt }
    }
    var nextRefresh: Date? {
        get { storage.fields.nextRefresh }
        _modify { makeUnique(); yield &storage.fields.nextRefresh }
    }
    var phase: RefreshPhase {
        get { storage.fields.phase }
        _modify { makeUnique(); yield &storage.fields.phase }
    }
    var recovering: Bool {
        get { storage.fields.recovering }
        _modify { makeUnique(); yield &storage.fields.recovering }
    }
    var waiters: [RefreshWaiter] {
        get { storage.fields.waiters }
        _modify { makeUnique(); yield &storage.fields.waiters }
    }
    var incarnation: UInt64 {
        get { storage.fields.incarnation }
        _modify { makeUnique(); yield &storage.fields.incarnation }
    }
    var lastStartedSinceEpoch: Duration? {
        get { storage.fields.lastStartedSinceEpoch }
        _modify { makeUnique(); yield &storage.fields.lastStartedSinceEpoch }
    }
}

struct EngineEntryFields {
    var record: IdentityRecord
    var secrets: IdentitySecrets
    var condition: TokenSnapshot.Condition = .active
    var version: UInt64 = 0
    var failures = 0
    var lastErrorCode: String?
    var lastErrorMessage: String?
    var retryAt: Date?
    var nextRefresh: Date?
    var phase = RefreshPhase.idle
    /// The next refresh redoes one a crash interrupted (it goes first);
    /// not a phase: it holds from the start until that refresh ends.
    var recovering = false
    var waiters: [RefreshWaiter] = []
    /// Which enrollment of this name the entry is: a job started for an
    /// earlier one (removed or re-enrolled meanwhile) never lands here.
    var incarnation: UInt64 = 0
    /// When the last refresh of this identity started (on the engine's
    /// clock, since its `epoch`), for the minimum interval between two
    /// refreshes.
    var lastStartedSinceEpoch: Duration?
}
