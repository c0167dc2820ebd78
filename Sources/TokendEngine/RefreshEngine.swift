import Foundation
import Logging
import ServiceLifecycle
import TokendCache
import TokendCore

/// The single refresher: keeps every identity's access token fresh.
///
/// One actor owns all per-identity state. Deadlines live in one
/// ``TimerHeap``; one loop (``run()``) sleeps until the earliest deadline or
/// a wake-up, then starts due refreshes within a global concurrency cap and
/// per-provider rate limits. A refresh is single-flight: the scheduler,
/// `GET min_ttl=`, `REFRESH` and crash recovery all join the one in flight.
///
/// Durability: an intent is made durable before a refresh token reaches the
/// provider, and the result is committed to the vault before the cache (and
/// so any client) sees the new access token.
package actor RefreshEngine<C: Clock> where C.Duration == Duration {
    // Not nested: a type nested in this generic actor is generic too, and
    // code outside a specialization then reaches every field of it through
    // run-time metadata (at 100,000 identities, a second of start-up).
    typealias Entry = EngineEntry
    typealias Phase = RefreshPhase
    typealias Waiter = RefreshWaiter

    let vault: any VaultStore
    /// Set when agents share the store (the fleet store): the refresh of an
    /// identity then needs its claim, and commits only through it.
    let exclusion: (any RefreshExclusion)?
    /// Where results the vault refused are kept across restarts (fleet store).
    let held: (any HeldResults)?
    var providers: [String: any TokenProvider]
    package nonisolated let cache: TokenCache
    let clock: C
    /// The clock's reading at init: entries keep times as offsets from it.
    let epoch: C.Instant
    let wallClock: @Sendable () -> Date
    let random: @Sendable () -> Double
    let settings: EngineSettings
    let logger: Logger
    let wake = WakeSignal()
    let intents: GroupCommit<RefreshIntent, Void>
    let commits: GroupCommit<RefreshCommit, Int64?>

    var entries: [IdentityName: Entry] = [:]
    /// Results the provider returned but the vault has not stored yet (rare,
    /// so kept out of `Entry`, which exists 100,000 times).
    var uncommitted: [IdentityName: RefreshCommit] = [:]
    /// Fleet store: generations announced while this agent's own flight of
    /// the identity ran, followed when it ends.
    var newerInStore: [IdentityName: Int64] = [:]
    var timers = TimerHeap<C.Instant>()
    var queues: [String: ReadyQueue] = [:]
    var buckets: [String: TokenBucket<C.Instant>] = [:]
    var blockedProviders: [String: (until: C.Instant, message: String)] = [:]
    var inFlight = 0
    /// Refreshes in flight per provider, and where the next round of
    /// `startDueRefreshes` begins: providers take turns and share the cap,
    /// so a slow (or hostile) provider cannot hold every slot.
    var inFlightByProvider: [String: Int] = [:]
    var providerTurn = 0
    /// Names whose entry was removed while its refresh was in flight: a
    /// new enrollment of the name waits for that refresh to end.
    var orphanedFlights: Set<IdentityName> = []
    var nextIncarnation: UInt64 = 0
    var nextWaiterID: UInt64 = 0
    var statistics = EngineStatistics()
    var clockCheck: (monotonic: C.Instant, wall: Date)
    /// Whether ``start()`` has loaded the vault: before it, a change to the
    /// identities only writes the vault (the load picks it up).
    var loaded = false
    /// Changes to the identities (enroll, remove, declared sync) run one at
    /// a time, each writing the vault and then memory, so the two agree.
    let identityChanges = AsyncLock()
    /// Called on every turn of the scheduler loop (systemd watchdog).
    let heartbeat: (@Sendable () -> Void)?
    /// Turns of the scheduler loop so far, and whether it is asleep now:
    /// lets a test with a manual clock wait for the loop instead of guessing.
    package private(set) var turns = 0
    package private(set) var asleep = false

    package init(
        vault: any VaultStore, exclusion: (any RefreshExclusion)? = nil, held: (any HeldResults)? = nil,
        providers: [String: any TokenProvider],
        cache: TokenCache = TokenCache(), clock: C, wallClock: @escaping @Sendable () -> Date = { Date() },
        random: @escaping @Sendable () -> Double = JitterRandom().unit,
        settings: EngineSettings = EngineSettings(), logger: Logger = Logger(label: "tokend.engine"),
        heartbeat: (@Sendable () -> Void)? = nil
    ) {
        self.heartbeat = heartbeat
        self.vault = vault
        self.exclusion = exclusion
        self.held = held
        self.providers = providers
        self.cache = cache
        self.clock = clock
        self.epoch = clock.now
        self.wallClock = wallClock
        self.random = random
        self.settings = settings
        self.logger = logger
        self.clockCheck = (clock.now, wallClock())
        intents = GroupCommit { batch in
            try await vault.recordIntents(batch: batch)
            return batch.map { _ in () }
        }
        commits = GroupCommit { batch in try await vault.commit(batch: batch) }
    }

    /// Loads every identity from the vault into the cache and plans it.
    /// Identities with an unfinished refresh (a crash mid-refresh) are
    /// refreshed first. Call once, before ``run()``.
    @discardableResult
    package func start() async throws -> (identities: Int, recovering: Int) {
        let began = ContinuousClock.now
        let stored = try await vault.loadAll()
        let read = ContinuousClock.now
        let unfinished = Dictionary(
            try await vault.pendingIntents().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        // Sized once: growing 100,000-entry tables step by step leaves the
        // heap fragmented long after the copies are freed.
        timers.reserveCapacity(stored.count)
        entries.reserveCapacity(stored.count)
        cache.reserveCapacity(stored.count)
        var recovering = 0
        for identity in stored {
            let name = identity.record.name
            var entry = newEntry(identity)
            switch identity.record.state {
            case .corrupt: entry.condition = .corrupt
            case .reauthRequired: entry.condition = .reauthRequired
            default: break
            }
            if entry.condition == .active, unfinished[name]?.generation == identity.record.generation {
                entry.recovering = true
                recovering += 1
            }
            let isRecovering = entry.recovering
            entries[name] = consume entry
            if isRecovering {
                enqueue(name, urgent: true)
            } else {
                plan(name, publish: false)
            }
            // Stored once, planned: the cache holds no snapshot of it yet,
            // so planning changed nothing there.
            if let entry = entries[name] { cache.publish(entry.published) }
        }
        recovering += takeHeldResults()
        if recovering > 0 {
            if exclusion != nil {
                // A shared store's intents are mostly other agents' refreshes
                // in flight; the claim sorts out which are left by a crash.
                logger.info(
                    "refreshes unfinished in the fleet store (other agents' in flight, or left by a crash); checking them first",
                    metadata: ["tokend.recovering": "\(recovering)"])
            } else {
                logger.warning(
                    "refreshes were interrupted by a crash; retrying them first",
                    metadata: ["tokend.recovering": "\(recovering)"])
            }
        }
        loaded = true
        logger.info("identities loaded and planned", metadata: ["tokend.identities": "\(stored.count)"])
        // Where start-up time goes, for whoever tunes it (docs/performance.md).
        logger.debug(
            "load timing",
            metadata: [
                "tokend.vault.seconds": "\(Self.seconds(read - began))",
                "tokend.plan.seconds": "\(Self.seconds(ContinuousClock.now - read))",
            ])
        return (stored.count, recovering)
    }

    /// The scheduler loop. Returns when the calling task is cancelled,
    /// after letting refreshes in flight finish (a refresh token must not
    /// be abandoned mid-exchange).
    func schedule() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                turns &+= 1
                heartbeat?()
                detectClockJump()
                for job in startDueRefreshes() {
                    // An unstructured task, awaited by the group: it is not
                    // cancelled with the loop, so shutdown drains it.
                    let flight = Task { await self.execute(job) }
                    group.addTask { await flight.value }
                }
                asleep = true
                await sleep(until: nextDeadline())
                asleep = false
            }
        }
        logger.info("scheduler stopped")
    }

    /// Refreshes `name` now, or joins the refresh already in flight.
    ///
    /// - Parameters:
    ///   - force: refresh even if the token is fresh (admin `REFRESH`).
    ///   - minimumTTL: without `force`, refresh only if less than this many
    ///     seconds remain (`GET min_ttl=`).
    ///   - urgent: jump ahead of scheduled refreshes of the same provider
    ///     (admins and the agent itself; a reader's `min_ttl` waits its turn).
    package func refresh(
        _ name: IdentityName, force: Bool, minimumTTL: Double = 0, urgent: Bool = true
    ) async -> RefreshOutcome {
        guard var entry = entries[name] else { return .notFound }
        let now = wallClock()
        let current = cache.snapshot(name)
        if !force, let current, current.servableToken(at: now) != nil, Double(current.expiresIn(at: now)) >= minimumTTL {
            return .refreshed(current)
        }
        if force, entry.condition == .reauthRequired {
            // An operator asked: try the grant again (the provider may have
            // been wrong, or fixed); a second rejection puts it back.
            entry.condition = .active
            entry.failures = 0
            entries[name] = entry
            cache.publish(entry.published)
            logger.notice("re-trying a grant the provider had rejected, as an admin asked", metadata: ["tokend.identity": "\(name)"])
        }
        if !force, let retryAt = entry.retryAt, retryAt > now, entry.failures > 0 {
            // Failing and backing off (or told to wait by the provider): a
            // reader's request does not cut the wait short.
            return .failed(
                current, code: entry.lastErrorCode ?? "transient", message: entry.lastErrorMessage ?? "refresh failing",
                retryAfter: retryAt.timeIntervalSince(now))
        }
        switch entry.condition {
        case .reauthRequired: return .reauthRequired(current)
        case .corrupt: return .failed(current, code: "corrupt", message: entry.record.lastError ?? "corrupt", retryAfter: nil)
        case .active: break
        }
        guard providers[entry.record.provider] != nil else {
            return .failed(current, code: "unknown_provider", message: "provider \(entry.record.provider) is not configured", retryAfter: nil)
        }
        nextWaiterID += 1
        let id = nextWaiterID
        // Cancelling the caller (a client that stopped waiting) removes only
        // its wait; the refresh itself goes on for everyone else.
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                entries[name]?.waiters.append(Waiter(id: id, continuation: continuation))
                if entry.phase == .idle { enqueue(name, urgent: urgent) }
            }
        } onCancel: {
            Task { await self.stopWaiting(name, id: id) }
        }
    }

    private func stopWaiting(_ name: IdentityName, id: UInt64) {
        guard let index = entries[name]?.waiters.firstIndex(where: { $0.id == id }),
            let waiter = entries[name]?.waiters.remove(at: index)
        else { return }
        waiter.resume(returning: .failed(
            cache.snapshot(name), code: "timeout", message: "stopped waiting for the refresh", retryAfter: nil))
    }

    package var currentStatistics: EngineStatistics {
        var current = statistics
        current.inFlight = inFlight
        current.queued = queues.values.reduce(0) { $0 + $1.count }
        current.scheduled = timers.count
        return current
    }
}

extension RefreshEngine: Service {
    /// Runs the scheduler until the task is cancelled or its service group
    /// shuts down gracefully; refreshes in flight finish first.
    package nonisolated func run() async throws {
        await cancelWhenGracefulShutdown { await self.schedule() }
    }
}
