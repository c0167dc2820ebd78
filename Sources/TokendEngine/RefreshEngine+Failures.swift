import Foundation
import Logging
import Metrics
import TokendCache
import TokendCore

/// What a failed refresh leads to: backoff, re-authentication required,
/// or a provider left alone.
extension RefreshEngine {
    /// Records a failed refresh and decides what comes next.
    func fail(_ name: IdentityName, error: ProviderError, waiters: [Waiter], now: Date) async {
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
            let snapshot = current.snapshot
            cache.publish(current.published)
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
        let published = entries[name] ?? entry
        let snapshot = published.snapshot
        cache.publish(published.published)
        for waiter in waiters {
            waiter.resume(returning: .failed(
                snapshot, code: error.code, message: error.message,
                retryAfter: snapshot.retryAt.map { max(0, $0.timeIntervalSince(now)) }))
        }
    }

    /// Every identity of a provider that rejected our client shows the
    /// error (stale while its token lasts, expired after).
    func markProviderFailing(_ provider: String, code: String, message: String, retryAt: Date) {
        for (name, var entry) in entries where entry.record.provider == provider && entry.condition == .active {
            entry.failures = max(entry.failures, 1)
            entry.lastErrorCode = code
            entry.lastErrorMessage = message
            entry.retryAt = retryAt
            entries[name] = entry
            cache.publish(entry.published)
        }
    }
}
