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
    }

    /// The I/O of one refresh, outside the actor: intent, provider call,
    /// silent re-authentication if the grant died, commit.
    nonisolated func perform(_ job: RefreshJob) async -> RefreshResult {
        if let pending = job.uncommitted { return await store(pending, reauthenticated: false) }

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
        return await store(commit, reauthenticated: reauthenticated)
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
    private nonisolated func store(_ commit: RefreshCommit, reauthenticated: Bool) async -> RefreshResult {
        var lastError = ""
        for delay in [Duration.zero] + settings.commitRetryDelays {
            if delay > .zero { try? await Task.sleep(for: delay) }
            do {
                guard let generation = try await commits.submit(commit) else { return .superseded }
                return .committed(commit, generation: generation, reauthenticated: reauthenticated)
            } catch let error as VaultError where error.code == .notFound {
                return .superseded
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
            entry.inFlight = false
            entries[name] = entry
            logger.info("dropped the result of a refresh for secrets replaced meanwhile", metadata: ["tokend.identity": "\(name)"])
            enqueue(name, urgent: true)
            return
        }
        entry.inFlight = false
        let waiters = entry.waiters
        entry.waiters = []
        entries[name] = entry
        let now = wallClock()

        switch result {
        case .committed(let commit, let generation, let reauthenticated):
            guard entry.record.generation == commit.expectedGeneration else {
                // Re-enrolled while in flight: the new secrets win; refresh them.
                entries[name]?.waiters = waiters
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
            uncommitted[name] = nil
            entries[name] = entry
            let snapshot = snapshot(of: entry)
            cache.update(snapshot)
            plan(name)
            let planned = cache.snapshot(name) ?? snapshot
            for waiter in waiters { waiter.resume(returning: .refreshed(planned)) }

        case .superseded:
            // The vault moved on without this entry knowing: take what the
            // vault holds now before refreshing again, never the old secrets.
            uncommitted[name] = nil
            if let stored = try? await vault.identity(named: name), var current = entries[name],
                current.incarnation == job.incarnation
            {
                current.record = stored.record
                current.secrets = stored.secrets
                entries[name] = current
                cache.update(snapshot(of: current))
            }
            entries[name]?.waiters = waiters
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
            uncommitted[name] = commit
            await fail(name, error: ProviderError(.transient(retryAfter: nil), "vault: \(reason)"), waiters: waiters, now: now)

        case .notStarted(let reason):
            logger.error("refresh not started", metadata: ["tokend.identity": "\(name)", "tokend.error": "\(reason)"])
            await fail(name, error: ProviderError(.transient(retryAfter: nil), reason), waiters: waiters, now: now)
        }
    }

    /// Records a failed refresh and decides what comes next.
    private func fail(_ name: IdentityName, error: ProviderError, waiters: [Waiter], now: Date) async {
        guard var entry = entries[name] else { return }
        statistics.failures += 1
        entry.failures += 1
        entry.lastErrorCode = error.code
        entry.lastErrorMessage = error.message
        entry.recovering = false
        let metadata: Logger.Metadata = [
            "tokend.identity": "\(name)", "tokend.provider": "\(entry.record.provider)",
            "tokend.failures": "\(entry.failures)", "tokend.error": "\(error.message)",
        ]

        // A client_credentials grant is the client's own: a refusal is the
        // provider's or the configuration's problem, and retrying (with
        // backoff) is the only way back; there is nothing to re-enroll.
        let kind: ProviderError.Kind =
            entry.record.grant == .clientCredentials && error.kind == .invalidGrant ? .transient(retryAfter: nil) : error.kind
        switch kind {
        case .invalidGrant:
            entry.condition = .reauthRequired
            entry.record.state = .reauthRequired
            entry.record.lastError = error.code
            entry.version &+= 1
            entry.nextRefresh = nil
            entries[name] = entry
            logger.warning("provider rejected the grant; the identity needs re-enrollment", metadata: metadata)
            do {
                try await vault.updateState(name, to: .reauthRequired, lastError: error.code)
            } catch {
                logger.error("cannot record reauth_required in the vault", metadata: ["tokend.identity": "\(name)", "tokend.error": "\(error)"])
            }
            // Removed while the state was being written: nothing to show.
            guard let current = entries[name], current.incarnation == entry.incarnation else {
                for waiter in waiters { waiter.resume(returning: .notFound) }
                return
            }
            let snapshot = snapshot(of: current)
            cache.update(snapshot)
            for waiter in waiters { waiter.resume(returning: .reauthRequired(snapshot)) }
            return

        case .clientMisconfigured, .unsupported:
            let until = instant(after: settings.misconfiguredRetry)
            if blockedProviders[entry.record.provider] == nil {
                logger.error("provider rejected tokend's client; fix the configuration and reload", metadata: metadata)
            }
            blockedProviders[entry.record.provider] = (until, error.message)
            entry.retryAt = now.addingTimeInterval(settings.misconfiguredRetry)
            entries[name] = entry
            schedule(name, at: entry.retryAt!, now: now)
            markProviderFailing(entry.record.provider, code: error.code, message: error.message, retryAt: entry.retryAt!)

        case .transient, .malformedResponse:
            let retryAfter: Double? = if case .transient(let seconds) = kind { seconds } else { nil }
            let delay = RefreshPlanning.retryDelay(
                attempt: entry.failures, retryAfter: retryAfter, expiresAt: entry.record.expiresAt, now: now,
                policy: settings.backoff, random: random())
            entry.retryAt = now.addingTimeInterval(delay)
            entries[name] = entry
            schedule(name, at: entry.retryAt!, now: now)
            if entry.failures == 1 {
                logger.info("refresh failed; retrying with backoff", metadata: metadata)
            } else {
                logger.debug("refresh failed again", metadata: metadata)
            }
        }
        let snapshot = snapshot(of: entries[name] ?? entry)
        cache.update(snapshot)
        for waiter in waiters {
            waiter.resume(returning: .failed(
                snapshot, code: error.code, message: error.message,
                retryAfter: snapshot.retryAt.map { max(0, $0.timeIntervalSince(now)) }))
        }
    }

    /// Every identity of a provider that rejected our client shows the
    /// error (stale while its token lasts, expired after).
    private func markProviderFailing(_ provider: String, code: String, message: String, retryAt: Date) {
        for (name, var entry) in entries where entry.record.provider == provider && entry.condition == .active {
            entry.failures = max(entry.failures, 1)
            entry.lastErrorCode = code
            entry.lastErrorMessage = message
            entry.retryAt = retryAt
            entries[name] = entry
            cache.update(snapshot(of: entry))
        }
    }

    /// One fate per session: when one identity learns that its session is
    /// dead, every identity of the group needs re-enrollment at once, and
    /// their WATCH clients hear of it.
    func endSession(_ group: String, learnedBy source: IdentityName) async {
        let members = entries.filter { $0.key != source && $0.value.record.sessionGroup == group && $0.value.condition == .active }
        guard !members.isEmpty else { return }
        logger.warning(
            "the provider rejected a shared session; every identity of it needs re-enrollment",
            metadata: [
                "tokend.identity": "\(source)", "tokend.session": "\(group)",
                "tokend.session.identities": "\(members.keys.map(\.rawValue).sorted().joined(separator: ","))",
            ])
        for (member, var entry) in members {
            entry.condition = .reauthRequired
            entry.record.state = .reauthRequired
            entry.record.lastError = "session_ended"
            entry.lastErrorCode = "session_ended"
            entry.lastErrorMessage = "the session shared with \(source) was rejected"
            entry.failures = max(entry.failures, 1)
            entry.version &+= 1
            entry.nextRefresh = nil
            entries[member] = entry
            cache.update(snapshot(of: entry))
            do {
                try await vault.updateState(member, to: .reauthRequired, lastError: "session_ended")
            } catch {
                logger.error("cannot record reauth_required in the vault", metadata: ["tokend.identity": "\(member)", "tokend.error": "\(error)"])
            }
        }
    }

    /// Ends a session group at the agent's side (after `REMOVE logout=all`
    /// ended it at the provider): every remaining member needs re-enrollment.
    package func sessionEnded(_ group: String, by source: IdentityName) async {
        await endSession(group, learnedBy: source)
    }

    /// `source` now shares its session with others under `group`.
    func sessionShared(_ source: IdentityName, group: String) {
        guard var entry = entries[source] else { return }
        entry.record.sessionGroup = group
        entries[source] = entry
        cache.update(snapshot(of: entry))
    }

    /// The members of a session group, for `STATUS` and `REMOVE`.
    package func sessionMembers(_ group: String) -> [IdentityName] {
        entries.filter { $0.value.record.sessionGroup == group }.keys.sorted()
    }
}
