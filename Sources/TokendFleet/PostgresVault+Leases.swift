import Foundation
import PostgresNIO
import TokendCore

extension PostgresVault {
    /// The longest and shortest lease the store grants.
    package static let leaseTTLRange: ClosedRange<Duration> = .milliseconds(100)...(.seconds(3600))

    /// Grants the lease of `name` to `holder` for `ttl` if it is free,
    /// expired (by the database's clock), or already held by `holder`.
    /// Every grant takes a new fence, a repeated grant to the same holder
    /// too (which fences off that holder's older lease value; use
    /// ``renewLease(_:ttl:)`` to extend one without that).
    ///
    /// - Returns: the lease, or nil if another holder has it.
    /// - Throws: `.storage` for an invalid holder or ttl, or when the
    ///   database is unreachable.
    package func acquireLease(name: IdentityName, holder: String, ttl: Duration) async throws -> Lease? {
        try Self.requireHolder(holder)
        guard Self.leaseTTLRange.contains(ttl) else {
            throw VaultError(.storage, "lease ttl must be between 0.1 s and 3600 s")
        }
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        return try await storage { [self] in
            // clock_timestamp(), not now(): an INSERT that waited for the row
            // lock must judge expiry at the moment it got it.
            let rows = try await client.query(
                """
                INSERT INTO leases AS l (name, holder, fence, acquired_at, expires_at)
                VALUES (\(name.rawValue), \(holder), 1, clock_timestamp(),
                        clock_timestamp() + make_interval(secs => \(seconds)))
                ON CONFLICT (name) DO UPDATE SET
                    holder = excluded.holder, fence = l.fence + 1,
                    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
                WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder
                RETURNING fence, expires_at
                """, logger: logger
            ).decode((Int64, Date).self).allElements()
            guard let (fence, expiresAt) = rows.first else { return nil }
            return Lease(name: name, holder: holder, fence: fence, expiresAt: expiresAt)
        }
    }

    /// Extends `lease` to `ttl` from now (database clock) keeping its fence,
    /// if it is still the current, unexpired grant: a holder renews during
    /// a long refresh without fencing off its own commit.
    ///
    /// - Returns: the renewed lease, or nil if it had expired or been taken
    ///   over (the holder must then not commit).
    package func renewLease(_ lease: Lease, ttl: Duration) async throws -> Lease? {
        guard Self.leaseTTLRange.contains(ttl) else {
            throw VaultError(.storage, "lease ttl must be between 0.1 s and 3600 s")
        }
        let seconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        return try await storage { [self] in
            let rows = try await client.query(
                """
                UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => \(seconds))
                WHERE name = \(lease.name.rawValue) AND holder = \(lease.holder) AND fence = \(lease.fence)
                  AND expires_at > clock_timestamp()
                RETURNING expires_at
                """, logger: logger
            ).decode(Date.self).allElements()
            guard let expiresAt = rows.first else { return nil }
            var renewed = lease
            renewed.expiresAt = expiresAt
            return renewed
        }
    }

    /// Ends `lease` now if it is still the current grant; the row (and its
    /// fence) stays, so the next grant still takes a higher fence.
    ///
    /// - Returns: false if the lease had already expired or been taken over.
    @discardableResult
    package func releaseLease(_ lease: Lease) async throws -> Bool {
        try await storage { [self] in
            let rows = try await client.query(
                """
                UPDATE leases SET expires_at = clock_timestamp()
                WHERE name = \(lease.name.rawValue) AND holder = \(lease.holder) AND fence = \(lease.fence)
                  AND expires_at > clock_timestamp()
                RETURNING 1
                """, logger: logger
            ).collect()
            return !rows.isEmpty
        }
    }

    /// The current lease of `name`, expired or not (for status and tests).
    package func currentLease(of name: IdentityName) async throws -> Lease? {
        try await storage { [self] in
            let rows = try await client.query(
                "SELECT holder, fence, expires_at FROM leases WHERE name = \(name.rawValue)", logger: logger
            ).decode((String, Int64, Date).self).allElements()
            guard let (holder, fence, expiresAt) = rows.first else { return nil }
            return Lease(name: name, holder: holder, fence: fence, expiresAt: expiresAt)
        }
    }

    /// Commits a refresh result only if the identity is still at
    /// `expectedGeneration` and `lease` is still the current, unexpired
    /// grant for it. Both are checked in the commit's own transaction with
    /// the lease row locked, so no other holder can take the lease over
    /// between the check and the commit.
    ///
    /// - Throws: `.generationConflict` when the lease is no longer held
    ///   (expired, taken over, or renewed with a newer fence) or the
    ///   generation moved on; `.notFound` if the identity is gone.
    @discardableResult
    package func commit(_ result: RefreshCommit, lease: Lease) async throws -> Int64 {
        guard lease.name == result.name else {
            throw VaultError(.storage, "the lease of \(lease.name) cannot commit a result of \(result.name)")
        }
        return try await storage { [self] in
            try await client.withTransaction(logger: logger) { connection in
                let held = try await connection.query(
                    """
                    SELECT 1 FROM leases
                    WHERE name = \(lease.name.rawValue) AND holder = \(lease.holder) AND fence = \(lease.fence)
                      AND expires_at > clock_timestamp()
                    FOR UPDATE
                    """, logger: self.logger
                ).collect()
                guard !held.isEmpty else {
                    throw VaultError(
                        .generationConflict,
                        "the lease of identity \(result.name) (fence \(lease.fence)) is no longer held by "
                            + "\(lease.holder); the result was not stored")
                }
                return try await self.applyOrExplain(result, on: connection)
            }
        }
    }

    /// A holder names one agent process in logs and in the `leases` table:
    /// 1-128 printable ASCII characters.
    static func requireHolder(_ holder: String) throws {
        guard !holder.isEmpty, holder.utf8.count <= 128, holder.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw VaultError(.storage, "lease holder must be 1-128 printable ASCII characters")
        }
    }
}
