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
    /// Where the secret columns start when selected after the metadata
    /// (``secretColumns``, in `SecretKind.allCases` order).
    static let firstSecretColumn = 15
    static let secretColumns = SecretKind.allCases.map(\.rawValue).joined(separator: ", ")

    /// Decodes a row's metadata, selected as ``metadataColumns`` first
    /// (read by position: a lookup by name compares every column name,
    /// and at load it runs 1.5 million times). Throws `.corrupt` for values
    /// this build cannot interpret, so that one bad row marks one identity.
    static func record(from row: Row, name: IdentityName) throws -> IdentityRecord {
        func invalid(_ column: String) -> VaultError {
            VaultError(.corrupt, "identity \(name) has an invalid \(column) in the vault")
        }
        guard let grant = (row[2] as String?).flatMap(GrantKind.init(rawValue:)) else { throw invalid("grant_kind") }
        guard let state = (row[5] as String?).flatMap(IdentityState.init(rawValue:)) else { throw invalid("state") }
        guard let provider = row[1] as String? else { throw invalid("provider") }
        guard let created = row[7] as Double?, let updated = row[8] as Double? else { throw invalid("timestamps") }
        guard let generation = row[6] as Int64? else { throw invalid("generation") }
        let rules = (row[3] as String?) ?? ""
        var record = IdentityRecord(
            name: name,
            provider: provider,
            grant: grant,
            allowRules: rules.isEmpty ? [] : rules.split(separator: ",").map(String.init),
            refreshAt: row[4],
            state: state,
            generation: generation,
            createdAt: Date(timeIntervalSince1970: created),
            updatedAt: Date(timeIntervalSince1970: updated),
            issuedAt: date(row[9]),
            expiresAt: date(row[10]),
            tokenType: row[11],
            lastError: row[12])
        record.fromConfiguration = (row[13] as String?) == "config"
        record.sessionGroup = row[14]
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
