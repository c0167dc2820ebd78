import Foundation
import Logging
import TokendCore

/// One refresher per identity across the fleet, through the leases of a
/// ``PostgresVault``: what the engine uses when `[vault] backend` is
/// `postgresql`.
package struct FleetExclusion: RefreshExclusion {
    package let vault: PostgresVault
    /// This agent process, in the `leases` table and in logs.
    package let holder: String
    /// How long a claim lasts; it must outlast the longest refresh (provider
    /// timeout plus commit), or a slow refresh is fenced off and its result lost.
    package let ttl: Duration

    package init(vault: PostgresVault, holder: String, ttl: Duration) {
        self.vault = vault
        self.holder = holder
        self.ttl = ttl
    }

    /// A holder name no other agent process has: host, process and a random
    /// part (a restarted process on the same host is another holder).
    package static func uniqueHolder(host: String = ProcessInfo.processInfo.hostName) -> String {
        let printableHost = String(host.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7F }.prefix(64))
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(printableHost.isEmpty ? "host" : printableHost):\(getpid()):\(random)"
    }

    package func claim(_ name: IdentityName) async throws -> RefreshClaim {
        if let lease = try await vault.acquireLease(name: name, holder: holder, ttl: ttl) { return .granted(lease) }
        // Who has it, and for how long by the database's clock, so the
        // engine tries again no earlier than the holder's lease can end.
        let rows = try await PostgresVault.storage(vault.settings) { [vault] in
            try await vault.client.query(
                """
                SELECT holder, GREATEST(EXTRACT(EPOCH FROM expires_at - clock_timestamp()), 0)::float8
                FROM leases WHERE name = \(name.rawValue)
                """, logger: vault.logger
            ).decode((String, Double).self).allElements()
        }
        guard let (current, seconds) = rows.first, seconds.isFinite else { return .heldElsewhere(holder: nil, remaining: nil) }
        return .heldElsewhere(holder: current, remaining: .milliseconds(Int64(min(seconds, 3600) * 1000)))
    }

    package func commit(_ result: RefreshCommit, under lease: Lease) async throws -> Int64? {
        do {
            return try await vault.commit(result, lease: lease)
        } catch let error as VaultError where error.code == .generationConflict {
            return nil
        }
    }

    package func renew(_ lease: Lease) async throws -> Lease? {
        try await vault.renewLease(lease, ttl: ttl)
    }

    package var renewalInterval: Duration { ttl / 3 }

    package func release(_ lease: Lease) async {
        _ = try? await vault.releaseLease(lease)
    }
}
