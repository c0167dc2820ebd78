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
    /// Also what the cache holds for the identity (``SnapshotSource``):
    /// the engine changes a storage only while no one else holds it
    /// (``makeUnique()`` copies it first), so a storage the cache holds is
    /// never changed again, and the values exist once.
    private final class Storage: SnapshotSource, @unchecked Sendable {
        var fields: EngineEntryFields

        init(_ fields: EngineEntryFields) {
            self.fields = fields
        }

        var snapshot: TokenSnapshot { fields.snapshot }
    }

    private var storage: Storage

    init(record: IdentityRecord, secrets: IdentitySecrets) {
        storage = Storage(EngineEntryFields(record: record, secrets: secrets))
    }

    /// The storage, for the cache to hold: after this, a change to the
    /// entry changes a copy.
    var published: any SnapshotSource { storage }

    /// The cache's view of the entry.
    var snapshot: TokenSnapshot { storage.fields.snapshot }

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
        get { storage.fields.secrets.value }
        set { makeUnique(); storage.fields.secrets.value = newValue }
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
        get { storage.fields.rare.values.lastErrorCode }
        set { makeUnique(); storage.fields.rare.values.lastErrorCode = newValue }
    }
    var lastErrorMessage: String? {
        get { storage.fields.rare.values.lastErrorMessage }
        set { makeUnique(); storage.fields.rare.values.lastErrorMessage = newValue }
    }
    var retryAt: Date? {
        get { storage.fields.rare.values.retryAt }
        set { makeUnique(); storage.fields.rare.values.retryAt = newValue }
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
        get { storage.fields.rare.values.recovering }
        set { makeUnique(); storage.fields.rare.values.recovering = newValue }
    }
    var waiters: [RefreshWaiter] {
        get { storage.fields.rare.values.waiters }
        set { makeUnique(); storage.fields.rare.values.waiters = newValue }
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

/// Ordered so the fields pack without padding: at 100,000 identities each
/// 16 bytes here is 1.5 MB.
struct EngineEntryFields {
    var record: IdentityRecord
    var secrets: CompactSecrets
    var version: UInt64 = 0
    var failures = 0
    /// Failures, waiters, a crash to recover from: rare, so held apart.
    var rare = RareEntryFields()
    /// Which enrollment of this name the entry is: a job started for an
    /// earlier one (removed or re-enrolled meanwhile) never lands here.
    var incarnation: UInt64 = 0
    var nextRefresh: Date?
    var condition: TokenSnapshot.Condition = .active
    var phase = RefreshPhase.idle
    /// When the last refresh of this identity started (on the engine's
    /// clock, since its `epoch`), for the minimum interval between two
    /// refreshes.
    var lastStartedSinceEpoch: Duration?

    init(record: IdentityRecord, secrets: IdentitySecrets) {
        self.record = record
        self.secrets = CompactSecrets(secrets)
    }
}

/// An identity's secrets as an entry keeps them: the two every identity
/// has in place, the others (a session id, a client secret, the previous
/// refresh token), which few have, behind one reference.
struct CompactSecrets {
    private final class Others {
        let previousRefreshToken: Secret?
        let sessionID: Secret?
        let clientSecret: Secret?

        init(_ secrets: IdentitySecrets) {
            previousRefreshToken = secrets.previousRefreshToken
            sessionID = secrets.sessionID
            clientSecret = secrets.clientSecret
        }
    }

    private var refreshToken: Secret?
    private var accessToken: Secret?
    private var others: Others?

    init(_ secrets: IdentitySecrets) {
        refreshToken = secrets.refreshToken
        accessToken = secrets.accessToken
        let rare = secrets.previousRefreshToken != nil || secrets.sessionID != nil || secrets.clientSecret != nil
        others = rare ? Others(secrets) : nil
    }

    var accessTokenOnly: Secret? { accessToken }

    var value: IdentitySecrets {
        get {
            IdentitySecrets(
                refreshToken: refreshToken, previousRefreshToken: others?.previousRefreshToken, accessToken: accessToken,
                sessionID: others?.sessionID, clientSecret: others?.clientSecret)
        }
        set { self = CompactSecrets(newValue) }
    }
}

extension EngineEntryFields {
    var snapshot: TokenSnapshot {
        TokenSnapshot(
            name: record.name, provider: record.provider, allowRules: record.allowRules,
            accessToken: secrets.accessTokenOnly, tokenType: record.tokenType ?? "Bearer",
            issuedAt: record.issuedAt, expiresAt: record.expiresAt, condition: condition,
            refreshing: phase == .inFlight, failures: failures,
            lastError: rare.values.lastErrorCode ?? Self.conditionCode(condition),
            generation: record.generation, nextRefresh: nextRefresh, retryAt: rare.values.retryAt,
            sessionGroup: record.sessionGroup)
    }

    /// The `last_error` of an identity that needs an operator, when no
    /// refresh failed in this run (the condition came from the vault).
    static func conditionCode(_ condition: TokenSnapshot.Condition) -> String? {
        switch condition {
        case .active: nil
        case .reauthRequired: "invalid_grant"
        case .corrupt: "corrupt"
        }
    }
}

/// The fields of an entry that are set only while something is wrong or
/// waiting (a failing refresh, callers waiting for one, a crash to
/// recover from): one optional reference in each of 100,000 entries
/// instead of about 80 bytes. The box is never changed, only replaced, so
/// copies of an entry may share it.
struct RareEntryFields {
    struct Values {
        var lastErrorCode: String?
        var lastErrorMessage: String?
        var retryAt: Date?
        var waiters: [RefreshWaiter] = []
        /// The next refresh redoes one a crash interrupted (it goes first);
        /// not a phase: it holds from the start until that refresh ends.
        var recovering = false

        var isEmpty: Bool {
            lastErrorCode == nil && lastErrorMessage == nil && retryAt == nil && waiters.isEmpty && !recovering
        }
    }

    private final class Box {
        let values: Values

        init(_ values: Values) {
            self.values = values
        }
    }

    private var box: Box?

    var values: Values {
        get { box?.values ?? Values() }
        set { box = newValue.isEmpty ? nil : Box(newValue) }
    }
}
