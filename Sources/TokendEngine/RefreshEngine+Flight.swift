import Foundation
import Logging
import Metrics
import TokendCache
import TokendCore

extension RefreshEngine {
    /// Performs `job` and hands the result back to the actor.
    nonisolated func execute(_ job: RefreshJob) async {
        let started = ContinuousClock.now
        let result = await perform(job)
        Metrics.Timer(label: "tokend_refresh_duration_seconds", dimensions: [("provider", job.provider.name)])
            .record(duration: ContinuousClock.now - started)
        Counter(label: "tokend_refreshes_total", dimensions: [("provider", job.provider.name), ("outcome", result.outcome)])
            .increment()
        await finish(job.name, job: job, result: result)
        await catchUp(job.name)
    }

    /// The I/O of one refresh, outside the actor. With a fleet store, first
    /// the claim and a fresh read under it; then ``refresh(_:under:)``.
    nonisolated func perform(_ job: RefreshJob) async -> RefreshResult {
        guard let exclusion else { return await refresh(job, under: nil) }
        let lease: Lease
        do {
            switch try await exclusion.claim(job.name) {
            case .granted(let granted): lease = granted
            case .heldElsewhere(let holder, let remaining): return .heldElsewhere(holder: holder, remaining: remaining)
            }
        } catch {
            return .notStarted("cannot claim the identity in the fleet store: \(error)")
        }
        let result: RefreshResult
        do {
            // Another agent may have refreshed since this one last read the
            // identity: its refresh token is spent, so only the store's copy
            // may go to the provider.
            let stored = try await vault.identity(named: job.name)
            if let stored, stored.record.generation == job.record.generation {
                // The store's secrets, not memory's: a session id another
                // agent moved the whole session group to changes no
                // generation but this identity's row.
                var current = job
                current.secrets = stored.secrets
                result = await refresh(current, under: lease, renewing: exclusion)
            } else {
                result = stored.map { .superseded($0) } ?? .removedElsewhere
            }
        } catch {
            result = .notStarted("cannot read the identity from the fleet store: \(error)")
        }
        await exclusion.release(lease)
        return result
    }

    /// ``refresh(_:under:)`` while renewing `lease`, so a slow provider
    /// does not lose it; a frozen or cut-off agent stops renewing and does.
    private nonisolated func refresh(_ job: RefreshJob, under lease: Lease, renewing exclusion: any RefreshExclusion) async -> RefreshResult {
        let logger = logger
        return await withTaskGroup(of: RefreshResult?.self) { group in
            group.addTask { await self.refresh(job, under: lease) }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: exclusion.renewalInterval)
                    guard !Task.isCancelled else { break }
                    do {
                        if try await exclusion.renew(lease) == nil {
                            logger.warning(
                                "the lease of an identity was lost mid-refresh; its result will be fenced off",
                                metadata: ["tokend.identity": "\(job.name)", "tokend.fleet.fence": "\(lease.fence)"])
                            break
                        }
                    } catch {
                        if Task.isCancelled { break }
                        // Unreachable now; the next try may still make it in time.
                        logger.warning(
                            "cannot renew the lease of an identity mid-refresh",
                            metadata: ["tokend.identity": "\(job.name)", "tokend.error": "\(error)"])
                    }
                }
                return nil
            }
            var outcome = RefreshResult.notStarted("the refresh ended without a result")
            for await finished in group {
                guard let finished else { continue }
                outcome = finished
                group.cancelAll()
            }
            return outcome
        }
    }

    /// Intent, provider call, silent re-authentication if the grant died,
    /// commit (fenced by `lease` when there is one).
    private nonisolated func refresh(_ job: RefreshJob, under lease: Lease?) async -> RefreshResult {
        if let pending = job.uncommitted { return await store(pending, reauthenticated: false, under: lease) }

        let request: GrantRequest
        switch job.record.grant {
        case .refreshToken:
            if let token = job.secrets.refreshToken {
                request = .refreshToken(token)
            } else if let session = job.secrets.sessionID, job.provider.supportsSessionAuthentication {
                request = .session(session)
            } else {
                return .failed(ProviderError(.invalidGrant, "identity \(job.name) has no refresh token"))
            }
        case .session:
            guard let session = job.secrets.sessionID else {
                return .failed(ProviderError(.invalidGrant, "identity \(job.name) has no session id"))
            }
            request = .session(session)
        case .clientCredentials:
            request = .clientCredentials
        }

        if case .refreshToken = request {
            // Durable before the refresh token leaves the host: if we die
            // with the provider's answer in flight, the next start knows.
            do {
                try await intents.submit(RefreshIntent(name: job.name, generation: job.record.generation, startedAt: wallClock()))
            } catch {
                return .notStarted("cannot record the refresh intent: \(error)")
            }
        }

        var reauthenticated = false
        let grant: TokenGrant
        do {
            grant = try await obtain(request, from: job.provider)
        } catch let error as ProviderError {
            if error.kind == .invalidGrant, case .session = request { return .sessionRejected(error) }
            guard error.kind == .invalidGrant, case .refreshToken = request,
                let session = job.secrets.sessionID, job.provider.supportsSessionAuthentication
            else { return .failed(error) }
            // The refresh token is dead but the session may not be: one
            // silent re-authentication, then give up.
            logger.info(
                "refresh token rejected; trying silent session re-authentication",
                metadata: ["tokend.identity": "\(job.name)", "tokend.provider": "\(job.provider.name)"])
            do {
                grant = try await obtain(.session(session), from: job.provider)
                reauthenticated = true
            } catch let retry as ProviderError {
                return retry.kind == .invalidGrant ? .sessionRejected(retry) : .failed(retry)
            } catch {
                return .failed(ProviderError(.transient(retryAfter: nil), "\(error)"))
            }
        } catch {
            return .failed(ProviderError(.transient(retryAfter: nil), "\(error)"))
        }

        let commit = RefreshCommit(
            name: job.name, expectedGeneration: job.record.generation, accessToken: grant.accessToken,
            tokenType: grant.tokenType, issuedAt: grant.receivedAt, expiresAt: grant.expiresAt,
            newRefreshToken: grant.refreshToken, newSessionID: grant.sessionID)
        return await store(commit, reauthenticated: reauthenticated, under: lease)
    }

    /// A fleet commit refused: the lease ended (a holder frozen or cut off
    /// past its expiry) or the identity moved on. The result is dropped, by
    /// design: the store's copy, from whoever holds the identity now, wins.
    private nonisolated func fencedOff(_ commit: RefreshCommit, lease: Lease) {
        Counter(label: "tokend_fleet_conflicts_total").increment()
        logger.warning(
            "a refresh result was fenced off: the lease was lost or another agent moved the identity on; the store's copy wins",
            metadata: [
                "tokend.identity": "\(commit.name)", "tokend.fleet.fence": "\(lease.fence)",
                "tokend.generation": "\(commit.expectedGeneration)",
            ])
    }

    private nonisolated func obtain(_ request: GrantRequest, from provider: any TokenProvider) async throws -> TokenGrant {
        do {
            // The one gate for what any provider returns (the HTTP providers
            // already passed it; a provider of another kind may not have).
            return try ProviderReplyGate.checked(try await provider.obtain(request), from: "provider \(provider.name)")
        } catch let error as ProviderError {
            throw error
        } catch {
            throw ProviderError(.transient(retryAfter: nil), "provider \(provider.name): \(error)")
        }
    }

    /// Commits a result, retrying briefly: the provider has already rotated
    /// the refresh token, so giving up here would lose the only copy.
    private nonisolated func store(_ commit: RefreshCommit, reauthenticated: Bool, under lease: Lease?) async -> RefreshResult {
        var lastError = ""
        for delay in [Duration.zero] + settings.commitRetryDelays {
            if delay > .zero { try? await Task.sleep(for: delay) }
            do {
                let committed: Int64?
                if let lease, let exclusion {
                    committed = try await exclusion.commit(commit, under: lease)
                    if committed == nil { fencedOff(commit, lease: lease) }
                } else {
                    committed = try await commits.submit(commit)
                }
                guard let generation = committed else {
                    return .superseded(try? await vault.identity(named: commit.name))
                }
                return .committed(commit, generation: generation, reauthenticated: reauthenticated)
            } catch let error as VaultError where error.code == .notFound {
                return .superseded(nil)
            } catch {
                lastError = "\(error)"
            }
        }
        return .uncommitted(commit, lastError)
    }

    /// Applies a result to the entry, the cache and the waiters.
    func finish(_ name: IdentityName, job: RefreshJob, result: RefreshResult) async {
        inFlight -= 1
        inFlightByProvider[job.record.provider, default: 1] -= 1
        wake.signal()
        guard var entry = entries[name] else {
            orphanedFlights.remove(name)
            return
        }
        guard entry.incarnation == job.incarnation else {
            // Removed and enrolled again while this ran: its result belongs
            // to secrets that no longer exist. Now the new ones may refresh.
            orphanedFlights.remove(name)
            entry.phase = .idle
            entries[name] = entry
            logger.info("dropped the result of a refresh for secrets replaced meanwhile", metadata: ["tokend.identity": "\(name)"])
            enqueue(name, urgent: true)
            return
        }
        entry.phase = .idle
        let waiters = entry.waiters
        entry.waiters = []
        entries[name] = entry
        let now = wallClock()

        switch result {
        case .committed(let commit, let generation, let reauthenticated):
            guard entry.record.generation == commit.expectedGeneration else {
                // Re-enrolled while in flight: the new secrets win; refresh them.
                entries[name]?.waiters.append(contentsOf: waiters)
                enqueue(name, urgent: true)
                return
            }
            statistics.refreshes += 1
            entry.record.generation = generation
            entry.record.issuedAt = commit.issuedAt
            entry.record.expiresAt = commit.expiresAt
            entry.record.tokenType = commit.tokenType
            entry.record.state = .fresh
            entry.record.lastError = nil
            if let rotated = commit.newRefreshToken { entry.secrets.refreshToken = rotated }
            if let session = commit.newSessionID {
                entry.secrets.sessionID = session
                // The vault moved every member of the group to it; so does memory.
                if let group = entry.record.sessionGroup {
                    for (member, var other) in entries where member != name && other.record.sessionGroup == group {
                        other.secrets.sessionID = session
                        entries[member] = other
                    }
                }
            }
            entry.secrets.accessToken = commit.accessToken
            if entry.failures > 0 || entry.recovering || reauthenticated {
                logger.info(
                    reauthenticated ? "identity recovered by silent session re-authentication" : "refresh succeeded again",
                    metadata: ["tokend.identity": "\(name)", "tokend.failures": "\(entry.failures)"])
            }
            entry.failures = 0
            entry.lastErrorCode = nil
            entry.lastErrorMessage = nil
            entry.retryAt = nil
            entry.recovering = false
            letGo(name)
            entries[name] = entry
            let snapshot = entry.snapshot
            cache.publish(entry.published)
            plan(name)
            let planned = cache.snapshot(name) ?? snapshot
            for waiter in waiters { waiter.resume(returning: .refreshed(planned)) }

        case .superseded(let stored?) where exclusion != nil:
            // Another agent of the fleet refreshed first: serve its token.
            adopt(stored, waiters: waiters)

        case .superseded(let stored):
            // The vault moved on without this entry knowing: take what the
            // vault holds now (read within the flight, before this) before
            // refreshing again, never the old secrets.
            letGo(name)
            var current = entry
            if let stored {
                current.record = stored.record
                current.secrets = stored.secrets
            }
            current.waiters = waiters
            entries[name] = current
            cache.publish(current.published)
            enqueue(name, urgent: !waiters.isEmpty)

        case .failed(let error):
            await fail(name, error: error, waiters: waiters, now: now)

        case .sessionRejected(let error):
            await fail(name, error: error, waiters: waiters, now: now)
            if let group = entry.record.sessionGroup { await endSession(group, learnedBy: name) }

        case .uncommitted(let commit, let reason):
            logger.error(
                "the vault refused a refresh result; holding it in memory and retrying",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(reason)"])
            hold(commit)
            await fail(name, error: ProviderError(.transient(retryAfter: nil), "vault: \(reason)"), waiters: waiters, now: now)
            retryHeldResultSoon(name, incarnation: entry.incarnation, now: now)

        case .heldElsewhere(let holder, let remaining):
            heldElsewhere(name, by: holder, remaining: remaining, waiters: waiters, now: now)

        case .removedElsewhere:
            entries[name]?.waiters = waiters
            removed(name)
            logger.info("identity removed from the fleet store by another host", metadata: ["tokend.identity": "\(name)"])

        case .notStarted(let reason):
            // Said once per failing spell: a held result retried every
            // quarter second while the store is down would flood the log.
            logger.log(
                level: entry.failures == 0 ? .error : .debug, "refresh not started",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(reason)"])
            await fail(name, error: ProviderError(.transient(retryAfter: nil), reason), waiters: waiters, now: now)
            retryHeldResultSoon(name, incarnation: entry.incarnation, now: now)
        }
    }

    /// On a fleet store, a result the store has not taken yet is offered
    /// again soon rather than after a backoff: once this agent's lease of
    /// the identity ends, its claim may pass to an agent holding only the
    /// refresh token the provider already rotated.
    private func retryHeldResultSoon(_ name: IdentityName, incarnation: UInt64, now: Date) {
        guard exclusion != nil, uncommitted[name] != nil, entries[name]?.incarnation == incarnation else { return }
        let retry = now.addingTimeInterval(Self.seconds(settings.heldResultRetry))
        entries[name]?.retryAt = retry
        schedule(name, at: retry, now: now)
    }
}
