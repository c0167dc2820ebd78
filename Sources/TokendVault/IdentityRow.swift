import Foundation
import GRDB
import TokendCore

/// Mapping between `identities` rows and the core types. The only file that
/// knows the table's column names.
enum IdentityRow {
    static let metadataColumns = """
        name, provider, grant_kind, allow_rules, refresh_at, state, generation, created_at,
        updated_at, issued_at, expires_at, token_type, last_error, source, session_group
        """

    /// Decodes a row's metadata. Throws `.corrupt` for values this build
    /// cannot interpret, so that one bad row marks one identity.
    static func record(from row: Row, name: IdentityName) throws -> IdentityRecord {
        func invalid(_ column: String) -> VaultError {
            VaultError(.corrupt, "identity \(name) has an invalid \(column) in the vault")
        }
        guard let grant = GrantKind(rawValue: row["grant_kind"]) else { throw invalid("grant_kind") }
        guard let state = IdentityState(rawValue: row["state"]) else { throw invalid("state") }
        let rules: String = row["allow_rules"]
        var record = IdentityRecord(
            name: name,
            provider: row["provider"],
            grant: grant,
            allowRules: rules.isEmpty ? [] : rules.split(separator: ",").map(String.init),
            refreshAt: row["refresh_at"],
            state: state,
            generation: row["generation"],
            createdAt: date(row["created_at"])!,
            updatedAt: date(row["updated_at"])!,
            issuedAt: date(row["issued_at"]),
            expiresAt: date(row["expires_at"]),
            tokenType: row["token_type"],
            lastError: row["last_error"])
        record.fromConfiguration = (row["source"] as String?) == "config"
        record.sessionGroup = row["session_group"]
        return record
    }

    /// Joins allow rules for storage. Rules are comma-separated on the wire
    /// (`allow=uid:1,group:ops`), so none may contain a comma.
    static func joinRules(_ rules: [String]) throws -> String {
        for rule in rules where rule.isEmpty || rule.contains(",") || rule.contains(where: \.isNewline) {
            throw VaultError(.storage, "allow rule \"\(rule)\" is empty or contains a comma or newline")
        }
        return rules.joined(separator: ",")
    }

    static func date(_ seconds: Double?) -> Date? {
        seconds.map { Date(timeIntervalSince1970: $0) }
    }
}
