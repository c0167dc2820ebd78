import Foundation
import Logging
import Metrics
import TokendCache
import TokendCore

/// Following a fleet store: what another agent commits reaches this one as
/// a notification (``storeChanged(_:generation:)``), is read from the store
/// and served from memory. `GET` never waits on any of it.
extension RefreshEngine {
    /// Another agent (or an admin on another host) moved `name` to
    /// `generation` in the store.
    package func storeChanged(_ name: IdentityName, generation: Int64) async {
        if let entry = entries[name], entry.record.generation >= generation { return }
        if entries[name]?.phase == .inFlight {
            // The flight reads the store under its claim, or learns who
            // holds the identity; look again when it ends (``catchUp(_:)``).
            newerInStore[name] = max(newerInStore[name] ?? 0, generation)
            return
        }
        await follow(name)
    }

    /// The notification stream was (re)connected: what was announced while
    /// it was down is lost, so compare every generation with the store.
    package func resynchronize() async {
        // Alone with respect to this agent's own enrollments: one written
        // after the list was read must not look removed.
        await identityChanges.lock()
        let records: [IdentityRecord]
        do {
            records = try await vault.list(prefix: nil, after: nil, limit: Int(Int32.max))
        } catch {
            identityChanges.unlock()
            logger.warning(
                "cannot compare with the fleet store; serving what this agent holds",
                metadata: ["tokend.error": "\(error)"])
            return
        }
        let stored = Dictionary(records.map { ($0.name, $0.generation) }, uniquingKeysWith: { first, _ in first })
        let behind = stored.filter { name, generation in (entries[name]?.record.generation ?? 0) < generation }.keys
        let gone = entries.keys.filter { stored[$0] == nil }
        for name in gone where entries[name]?.phase != .inFlight {
            removed(name)
        }
        identityChanges.unlock()
        for name in behind.sorted() {
            await storeChanged(name, generation: stored[name] ?? 0)
        }
        if !behind.isEmpty || !gone.isEmpty {
            logger.info(
                "caught up with the fleet store",
                metadata: ["tokend.fleet.changed": "\(behind.count)", "tokend.fleet.removed": "\(gone.count)"])
        }
    }

    /// After a flight: follows a change announced while it ran, if the
    /// flight itself did not bring the entry up to it.
    func catchUp(_ name: IdentityName) async {
        guard let newer = newerInStore.removeValue(forKey: name) else { return }
        await storeChanged(name, generation: newer)
    }

    /// Reads `name` from the store and takes it if it is newer than memory.
    private func follow(_ name: IdentityName) async {
        let stored: StoredIdentity?
        do {
            stored = try await vault.identity(named: name)
        } catch {
            // The next notification, reconnection or claim catches up.
            logger.warning(
                "cannot read an identity another agent changed; serving what this agent holds",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(error)"])
            return
        }
        // (The actor ran other work during the read: look again.)
        guard let stored else {
            if let entry = entries[name], entry.phase != .inFlight {
                removed(name)
                logger.info("identity removed from the fleet store by another host", metadata: ["tokend.identity": "\(name)"])
            }
            return
        }
        guard let entry = entries[name] else {
            guard loaded else { return }
            enrolled(stored)
            logger.info("identity enrolled in the fleet store by another host", metadata: ["tokend.identity": "\(name)"])
            return
        }
        guard stored.record.generation > entry.record.generation else { return }
        guard entry.phase != .inFlight else {
            newerInStore[name] = max(newerInStore[name] ?? 0, stored.record.generation)
            return
        }
        let waiters = entry.waiters
        entries[name]?.waiters = []
        adopt(stored, waiters: waiters)
    }

    /// Takes what the store holds for `stored`'s identity, refreshed by
    /// another agent (or re-enrolled), and plans from it; waiters get it.
    func adopt(_ stored: StoredIdentity, waiters: [Waiter]) {
        let name = stored.record.name
        guard var entry = entries[name] else {
            for waiter in waiters { waiter.resume(returning: .notFound) }
            return
        }
        // A result this agent held for an older generation is spent: the
        // refresh token it rotated is no longer the identity's.
        letGo(name)
        entry.record = stored.record
        entry.secrets = stored.secrets
        entry.condition =
            switch stored.record.state {
            case .corrupt: .corrupt
            case .reauthRequired: .reauthRequired
            default: .active
            }
        entry.failures = 0
        entry.lastErrorCode = nil
        entry.lastErrorMessage = nil
        entry.retryAt = nil
        entry.recovering = false
        // Queued for a refresh this agent no longer needs to make: the
        // queue skips an entry that is not `.queued`.
        if entry.phase == .queued { entry.phase = .idle }
        entry.version &+= 1
        entries[name] = entry
        cache.publish(entry.published)
        plan(name)
        statistics.followed += 1
        let current = cache.snapshot(name) ?? entry.snapshot
        switch entry.condition {
        case .reauthRequired:
            for waiter in waiters { waiter.resume(returning: .reauthRequired(current)) }
        case .corrupt:
            for waiter in waiters {
                waiter.resume(returning: .failed(current, code: "corrupt", message: stored.record.lastError ?? "corrupt", retryAfter: nil))
            }
        case .active:
            if current.servableToken(at: wallClock()) != nil {
                for waiter in waiters { waiter.resume(returning: .refreshed(current)) }
            } else {
                // Planning queued a refresh of it: they wait for that one.
                entries[name]?.waiters.append(contentsOf: waiters)
            }
        }
    }

    /// Another agent holds the identity: its commit arrives as a
    /// notification. If it never does (the holder died or was cut off),
    /// the claim is tried again once the holder's lease can have ended.
    func heldElsewhere(_ name: IdentityName, by holder: String?, remaining: Duration?, waiters: [Waiter], now: Date) {
        guard entries[name] != nil else {
            for waiter in waiters { waiter.resume(returning: .notFound) }
            return
        }
        entries[name]?.waiters.append(contentsOf: waiters)
        let wait = min(max(remaining ?? .seconds(1), .milliseconds(100)), .seconds(60)) + .milliseconds(50)
        schedule(name, at: now.addingTimeInterval(Self.seconds(wait)), now: now)
        statistics.heldElsewhere += 1
        logger.debug(
            "identity held by another agent; following it",
            metadata: ["tokend.identity": "\(name)", "tokend.fleet.holder": "\(holder ?? "unknown")"])
    }
}

extension RefreshEngine: StoreFollower {}
