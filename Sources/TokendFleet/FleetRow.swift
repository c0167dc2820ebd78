import Foundation
import PostgresNIO
import TokendCore

/// Mapping between `identities` rows and the core types: the only file that
/// knows the table's column names (as IdentityRow does for SQLite).
enum FleetRow {
    static let metadataColumns = """
        name, provider, grant_kind, allow_rules, refresh_at, state, generation, created_at,
        updated_at, issued_at, expires_at, token_type, last_error, source, session_group
        """
    static let secretColumns = "refresh_token, previous_refresh_token, access_token, session_id, client_secret"

    /// Decodes a row's metadata. Throws `.corrupt` for values this build
    /// cannot interpret, so that one bad row marks one identity.
    static func record(from row: PostgresRandomAccessRow, name: IdentityName) throws -> IdentityRecord {
        func invalid(_ column: String) -> VaultError {
            VaultError(.corrupt, "identity \(name) has an invalid \(column) in the fleet store")
        }
        func value<T: PostgresDecodable>(_ column: String, _ type: T.Type) throws -> T {
            do { return try row[column].decode(T.self) } catch { throw invalid(column) }
        }
        guard let grant = GrantKind(rawValue: try value("grant_kind", String.self)) else { throw invalid("grant_kind") }
        guard let state = IdentityState(rawValue: try value("state", String.self)) else { throw invalid("state") }
        let rules = try value("allow_rules", String.self)
        var record = IdentityRecord(
            name: name,
            provider: try value("provider", String.self),
            grant: grant,
            allowRules: rules.isEmpty ? [] : rules.split(separator: ",").map(String.init),
            refreshAt: try value("refresh_at", Double?.self),
            state: state,
            generation: try value("generation", Int64.self),
            createdAt: try value("created_at", Date.self),
            updatedAt: try value("updated_at", Date.self),
            issuedAt: try value("issued_at", Date?.self),
            expiresAt: try value("expires_at", Date?.self),
            tokenType: try value("token_type", String?.self),
            lastError: try value("last_error", String?.self))
        record.fromConfiguration = try value("source", String.self) == "config"
        record.sessionGroup = try value("session_group", String?.self)
        return record
    }

    /// The sealed value of `kind`, or nil when the column is NULL.
    static func sealed(_ row: PostgresRandomAccessRow, _ kind: SecretKind, name: IdentityName) throws -> Data? {
        do {
            return try row[kind.rawValue].decode(Data?.self)
        } catch {
            throw VaultError(.corrupt, "\(kind.rawValue) of identity \(name) is not a byte string in the fleet store")
        }
    }

    /// Joins allow rules for storage; rules are comma-separated on the wire,
    /// so none may contain a comma (the same rule as the SQLite vault).
    static func joinRules(_ rules: [String]) throws -> String {
        for rule in rules where rule.isEmpty || rule.contains(",") || rule.contains(where: { $0.isNewline || $0 == "\0" }) {
            throw VaultError(.storage, "an allow rule is empty or contains a comma, newline or NUL")
        }
        let joined = rules.joined(separator: ",")
        guard joined.utf8.count <= 65536 else { throw VaultError(.storage, "allow rules exceed 64 KiB") }
        return joined
    }

    /// A provider name as the fleet store keeps it (1-256 bytes, no control
    /// characters), checked before the database's own CHECK so the message
    /// is tokend's.
    static func requireProvider(_ provider: String) throws {
        guard !provider.isEmpty, provider.utf8.count <= 256,
            !provider.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw VaultError(.storage, "provider name must be 1-256 bytes without control characters") }
    }
}
