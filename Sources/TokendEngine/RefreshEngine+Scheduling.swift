import Foundation
import TokendCache
import TokendCore

extension RefreshEngine {
    /// Plans the next refresh of `name` from its token's issue and expiry.
    func plan(_ name: IdentityName, publish: Bool = true) {
        // Only read here: a copy of the entry still alive when `schedule`
        // changes it would make that change copy the whole entry.
        let planned = entries[name].map { entry in
            (entry.condition, entry.record.provider, entry.secrets.accessToken != nil, entry.record.issuedAt,
             entry.record.expiresAt, entry.record.refreshAt)
        }
        guard let (condition, provider, hasToken, issuedAt, expiresAt, refreshAt) = planned, condition == .active else { return }
        guard providers[provider] != nil else {
            entries[name]?.lastErrorCode = "unknown_provider"
            entries[name]?.lastErrorMessage = "provider \(provider) is not configured"
            if publish, let entry = entries[name] { cache.publish(entry.published) }
            return
        }
        guard hasToken, let issuedAt else {
            // Never had a token (pending): get the first one, spread by the rate limit.
            enqueue(name, urgent: false)
            return
        }
        let now = wallClock()
        let when = RefreshPlanning.refreshTime(
            issuedAt: issuedAt, expiresAt: expiresAt, now: now,
            policy: settings.policy.with(refreshAt: refreshAt), random: random())
        schedule(name, at: when, now: now, publish: publish)
    }

    /// Puts `name` on the timer heap for wall-clock time `when`.
    ///
    /// - Parameter publish: false while loading: the cache gets the entry
    ///   once it is planned, so there is nothing there to update yet.
    func schedule(_ name: IdentityName, at when: Date, now: Date, publish: Bool = true) {
        guard let version = entries[name].map({ $0.version &+ 1 }) else { return }
        entries[name]?.version = version
        entries[name]?.nextRefresh = when
        timers.push(instant(after: when.timeIntervalSince(now)), key: name, version: version)
        if publish, let entry = entries[name], cache.contains(name) { cache.publish(entry.published) }
    }

    /// Queues `name` for a refresh slot and wakes the loop.
    func enqueue(_ name: IdentityName, urgent: Bool) {
        guard var entry = entries[name], entry.phase == .idle else { return }
        entry.phase = .queued
        entry.version &+= 1  // a pending timer entry is now stale
        entries[name] = entry
        queues[entry.record.provider, default: ReadyQueue()].append(name, urgent: urgent)
        wake.signal()
    }

    /// Moves due timers to the ready queues, then starts as many queued
    /// refreshes as the concurrency cap and the rate limits allow.
    func startDueRefreshes() -> [RefreshJob] {
        let now = clock.now
        while let due = timers.popDue(now: now) {
            guard let entry = entries[due.key], entry.version == due.version else { continue }
            enqueue(due.key, urgent: entry.recovering)
        }
        var jobs: [RefreshJob] = []
        let waiting = queues.keys.sorted()
        let share = providerShare()
        providerTurn = waiting.isEmpty ? 0 : (providerTurn + 1) % waiting.count
        for provider in waiting[providerTurn...] + waiting[..<providerTurn] {
            if let blocked = blockedProviders[provider] {
                guard blocked.until <= now else {
                    deferQueue(of: provider, until: blocked.until, message: blocked.message)
                    continue
                }
                blockedProviders[provider] = nil
            }
            while inFlight < settings.maxConcurrentRefreshes, inFlightByProvider[provider, default: 0] < share,
                let name = queues[provider]?.popFirst()
            {
                guard var entry = entries[name], entry.phase == .queued, entry.condition == .active else {
                    if entries[name]?.phase == .queued { entries[name]?.phase = .idle }
                    continue
                }
                guard entry.record.provider == provider else {
                    // Re-enrolled with another provider while it waited
                    // here: its secrets go to its own provider, never this one.
                    queues[entry.record.provider, default: ReadyQueue()].append(name, urgent: true)
                    wake.signal()
                    continue
                }
                guard let instance = providers[provider] else {
                    entry.phase = .idle
                    entries[name] = entry
                    plan(name)
                    continue
                }
                // A result held for the vault makes no provider call: it
                // is committed as soon as it can be (on a fleet store,
                // before its lease can pass to an agent holding a spent
                // refresh token), outside the interval and the rate limit.
                let holdsResult = uncommitted[name] != nil
                if !holdsResult, let last = entry.lastStartedSinceEpoch.map({ epoch.advanced(by: $0) }),
                    now < last.advanced(by: settings.minimumRefreshInterval)
                {
                    // Whatever asked (a timer, a reader's min_ttl, an admin,
                    // a provider's zero lifetime): one identity is refreshed
                    // at most once per interval.
                    entry.phase = .idle
                    entry.version &+= 1
                    entries[name] = entry
                    timers.push(last.advanced(by: settings.minimumRefreshInterval), key: name, version: entry.version)
                    continue
                }
                var bucket = buckets[provider]
                    ?? settings.providerRates[provider].map { TokenBucket(rate: $0, burst: max(1, $0), now: now) }
                    ?? TokenBucket(rate: settings.providerRate, burst: settings.providerBurst, now: now)
                let allowed = holdsResult || bucket.take(now: now)
                buckets[provider] = bucket
                guard allowed else {
                    // Back to the front: rate-limited, not forgotten.
                    queues[provider]?.pushFront(name)
                    break
                }
                entry.phase = .inFlight
                entry.lastStartedSinceEpoch = epoch.duration(to: now)
                entries[name] = entry
                inFlight += 1
                inFlightByProvider[provider, default: 0] += 1
                cache.publish(entry.published)
                jobs.append(RefreshJob(
                    name: name, record: entry.record, secrets: entry.secrets, provider: instance,
                    uncommitted: uncommitted[name], incarnation: entry.incarnation))
            }
            if queues[provider]?.isEmpty == true { queues[provider] = nil }
        }
        return jobs
    }

    /// Identities of a provider that rejected our client wait until the
    /// block lifts (or a reload), each with the provider's error.
    private func deferQueue(of provider: String, until: C.Instant, message: String) {
        guard let names = queues[provider]?.removeAll() else { return }
        queues[provider] = nil
        let wallUntil = wallClock().addingTimeInterval(Self.seconds(clock.now.duration(to: until)))
        for name in names {
            // Only what still waits for this provider: a stale name of an
            // identity in flight (re-enrolled meanwhile) is left alone, and
            // one re-enrolled with another provider waits for that one.
            guard var entry = entries[name], entry.phase == .queued else { continue }
            guard entry.record.provider == provider else {
                queues[entry.record.provider, default: ReadyQueue()].append(name, urgent: true)
                wake.signal()
                continue
            }
            entry.phase = .idle
            entry.failures = max(entry.failures, 1)
            entry.lastErrorCode = "client_misconfigured"
            entry.lastErrorMessage = message
            entry.retryAt = wallUntil
            entry.version &+= 1
            entry.nextRefresh = wallUntil
            entries[name] = entry
            timers.push(until, key: name, version: entry.version)
            cache.publish(entry.published)
            for waiter in entry.waiters {
                waiter.resume(returning: .failed(
                    cache.snapshot(name), code: "client_misconfigured", message: message,
                    retryAfter: wallUntil.timeIntervalSinceNow))
            }
            entries[name]?.waiters = []
        }
    }

    /// The earliest moment the loop has something to do, or nil for "only
    /// when woken".
    func nextDeadline() -> C.Instant? {
        var deadline = timers.earliest
        if let maximumSleep = settings.maximumSleep {
            let latest = clock.now.advanced(by: maximumSleep)
            deadline = min(deadline ?? latest, latest)
        }
        if inFlight < settings.maxConcurrentRefreshes {
            let now = clock.now
            let share = providerShare()
            // A provider at its share waits for one of its refreshes to
            // finish (which wakes the loop), not for time to pass.
            for (provider, queue) in queues where !queue.isEmpty && inFlightByProvider[provider, default: 0] < share {
                let ready = blockedProviders[provider]?.until ?? buckets[provider]?.nextToken(now: now) ?? now
                deadline = min(deadline ?? ready, ready)
            }
        }
        return deadline
    }

    /// How many refreshes one provider may have in flight: the cap, split
    /// evenly between the providers with work (queued or in flight).
    func providerShare() -> Int {
        let busy = Set(queues.keys).union(inFlightByProvider.filter { $0.value > 0 }.keys).count
        return max(1, settings.maxConcurrentRefreshes / max(1, busy))
    }

    /// Sleeps until `deadline` or a wake-up, whichever comes first.
    func sleep(until deadline: C.Instant?) async {
        let clock = clock
        let wake = wake
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await wake.wait() }
            if let deadline {
                group.addTask { try? await clock.sleep(until: deadline, tolerance: nil) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Re-plans everything when the wall clock moved differently from the
    /// monotonic clock (NTP step, suspend/resume, an operator's `date -s`):
    /// plans are made in wall-clock terms and may now be wrong.
    func detectClockJump() {
        let monotonic = clock.now
        let wall = wallClock()
        let expected = Self.seconds(clockCheck.monotonic.duration(to: monotonic))
        let actual = wall.timeIntervalSince(clockCheck.wall)
        clockCheck = (monotonic, wall)
        guard abs(actual - expected) > 5 else { return }
        logger.warning(
            "wall clock jumped; re-planning every refresh",
            metadata: ["tokend.clock.jump_seconds": "\(actual - expected)"])
        for (name, entry) in entries where entry.condition == .active && entry.phase == .idle {
            plan(name)
        }
    }

    func instant(after seconds: Double) -> C.Instant {
        clock.now.advanced(by: WholeSeconds.duration(seconds))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
