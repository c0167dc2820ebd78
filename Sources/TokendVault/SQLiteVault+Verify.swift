import Foundation
import GRDB
import TokendCore

/// The result of opening every sealed value in the vault.
package struct VaultVerifyReport: Sendable {
    package struct Problem: Sendable, Hashable {
        package var identity: IdentityName
        package var reason: String

        package init(identity: IdentityName, reason: String) {
            self.identity = identity
            self.reason = reason
        }
    }

    package var identities: Int
    package var corrupt: [Problem]
    package var ok: Int { identities - corrupt.count }

    package init(identities: Int, corrupt: [Problem]) {
        self.identities = identities
        self.corrupt = corrupt
    }
}

/// Facts about a vault that hold no secret, for `tokend vault info`.
package struct VaultInfo: Sendable {
    package var identities: Int
    package var byState: [IdentityState: Int]
    package var keyTerms: [UInt32]
    package var activeTerm: UInt32
    package var pendingIntents: Int
    package var migrations: [String]

    package init(
        identities: Int, byState: [IdentityState: Int], keyTerms: [UInt32], activeTerm: UInt32, pendingIntents: Int,
        migrations: [String]
    ) {
        self.identities = identities
        self.byState = byState
        self.keyTerms = keyTerms
        self.activeTerm = activeTerm
        self.pendingIntents = pendingIntents
        self.migrations = migrations
    }
}

extension SQLiteVault {
    /// Opens every sealed value without changing anything.
    package func verify() async throws -> VaultVerifyReport {
        let (identities, corrupt) = try await load(where: nil)
        return VaultVerifyReport(
            identities: identities.count,
            corrupt: corrupt.map { VaultVerifyReport.Problem(identity: $0.0, reason: $0.1) })
    }

    package func info() async throws -> VaultInfo {
        let activeTerm = keyRing.withLock { $0.activeTerm }
        return try await storage {
            try await pool.read { db in
                var byState: [IdentityState: Int] = [:]
                var total = 0
                for row in try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM identities GROUP BY state") {
                    let count: Int = row["n"]
                    total += count
                    if let state = IdentityState(rawValue: row["state"]) { byState[state] = count }
                }
                return VaultInfo(
                    identities: total, byState: byState,
                    keyTerms: try Int64.fetchAll(db, sql: "SELECT term FROM data_keys ORDER BY term").map { UInt32($0) },
                    activeTerm: activeTerm,
                    pendingIntents: try Int.fetchOne(db, sql: "SELECT count(*) FROM refresh_intents") ?? 0,
                    migrations: Array(try VaultMigrations.migrator.appliedMigrations(db)))
            }
        }
    }
}
