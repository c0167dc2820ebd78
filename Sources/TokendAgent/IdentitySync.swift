import Logging
import TokendConfig
import TokendCore

/// Keeps the vault's configuration-declared identities in step with the
/// file: creates the missing ones, updates allow rules and refresh points,
/// removes those the file no longer declares. Identities enrolled at run
/// time are never touched.
enum IdentitySync {
    struct Changes {
        var added: [IdentityName] = []
        /// Enrolled anew (provider or grant changed): new secrets.
        var updated: [IdentityName] = []
        /// Only allow rules or refresh point changed: same secrets, same
        /// generation, and any refresh in flight still lands.
        var policyChanged: [IdentityConfiguration] = []
        var removed: [IdentityName] = []
    }

    static func apply(_ declared: [IdentityConfiguration], to vault: any VaultStore, logger: Logger) async throws -> Changes {
        var changes = Changes()
        let existing = Dictionary(
            try await vault.list(prefix: nil, after: nil, limit: Int(Int32.max)).map { ($0.name, $0) },
            uniquingKeysWith: { first, _ in first })
        for identity in declared {
            let name = identity.name
            if let record = existing[name], record.provider == identity.provider, record.grant == identity.grant {
                if record.allowRules != identity.allow || record.refreshAt != identity.refreshAt {
                    try await vault.updatePolicy(name, allowRules: identity.allow, refreshAt: identity.refreshAt)
                    changes.policyChanged.append(identity)
                }
                continue
            }
            if let record = existing[name] {
                logger.warning(
                    "identity's provider or grant changed in the configuration; enrolling it anew",
                    metadata: ["tokend.identity": "\(name)", "tokend.provider": "\(record.provider) -> \(identity.provider)"])
            }
            try await vault.enroll(Enrollment(
                name: name, provider: identity.provider, grant: identity.grant, allowRules: identity.allow,
                refreshAt: identity.refreshAt, refreshToken: identity.refreshToken, sessionID: identity.sessionID,
                fromConfiguration: true))
            if existing[name] == nil { changes.added.append(name) } else { changes.updated.append(name) }
        }
        let declaredNames = Set(declared.map(\.name))
        for record in existing.values where record.fromConfiguration && !declaredNames.contains(record.name) {
            try await vault.remove(record.name)
            changes.removed.append(record.name)
        }
        if !(changes.added.isEmpty && changes.updated.isEmpty && changes.policyChanged.isEmpty && changes.removed.isEmpty) {
            logger.info(
                "configured identities applied",
                metadata: [
                    "tokend.added": "\(changes.added.count)", "tokend.updated": "\(changes.updated.count + changes.policyChanged.count)",
                    "tokend.removed": "\(changes.removed.count)",
                ])
        }
        return changes
    }
}
