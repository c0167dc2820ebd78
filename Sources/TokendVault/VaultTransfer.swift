import Foundation
import TokendCore

/// Everything `tokend vault migrate` carries from one store to the other,
/// secrets opened (they are re-sealed under the destination's data key):
/// every identity with all of its fields, and the last generation of each
/// removed name.
package struct VaultTransfer: Sendable {
    package var identities: [StoredIdentity]
    package var retiredGenerations: [String: Int64]

    package init(identities: [StoredIdentity], retiredGenerations: [String: Int64]) {
        self.identities = identities
        self.retiredGenerations = retiredGenerations
    }

    /// Refuses a source that cannot be moved whole: unfinished refreshes
    /// (their outcome belongs to the store they started on) or values that
    /// do not open (they would arrive as garbage).
    package static func requireMovable(
        place: String, pendingIntents: [RefreshIntent], corrupt: [(IdentityName, String)]
    ) throws {
        if !pendingIntents.isEmpty {
            let names = pendingIntents.prefix(5).map(\.name.rawValue).joined(separator: ", ")
            throw VaultError(
                .locked,
                "\(place) has \(pendingIntents.count) unfinished refresh(es) (\(names)); stop the agent(s) first, "
                    + "or start the agent once so it settles them, stop it, and migrate again; nothing was changed")
        }
        if !corrupt.isEmpty {
            let names = corrupt.prefix(5).map(\.0.rawValue).joined(separator: ", ")
            throw VaultError(
                .corrupt,
                "\(place) has \(corrupt.count) identity(ies) whose sealed values do not open (\(names)); "
                    + "re-enroll or remove them (tokend vault verify lists them), then migrate; nothing was changed")
        }
    }
}

extension StoredIdentity {
    /// The sealed values of this identity under `ring`, by column.
    package func sealedValues(_ ring: KeyRing) throws -> [SecretKind: Data] {
        var values: [SecretKind: Data] = [:]
        for kind in SecretKind.allCases {
            if let secret = secrets[kind] { values[kind] = try ring.seal(secret, identity: record.name, kind: kind) }
        }
        return values
    }
}
