import Foundation
import GRDB
import TokendCore
import TokendVault

/// A vault in a fresh temporary directory, with its key file; removed when
/// the fixture goes away.
final class VaultFixture {
    let directory: String
    let vaultPath: String
    let keyPath: String

    init() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tokend-vault-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        vaultPath = directory + "/vault.db"
        keyPath = directory + "/vault.key"
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func create() throws -> SQLiteVault {
        try SQLiteVault.create(at: vaultPath, kek: try KeyEncryptionKey.generate(at: keyPath))
    }

    func open(access: SQLiteVault.Access = .writer) throws -> SQLiteVault {
        try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)), access: access)
    }

    /// Raw SQL on the vault file, bypassing tokend, to play the attacker.
    func tamper(_ body: (Database) throws -> Void) throws {
        let queue = try DatabaseQueue(path: vaultPath)
        try queue.write(body)
        try queue.close()
    }

    /// Every byte tokend left on disk for this vault: the database, its WAL,
    /// its shared-memory index and any rollback journal.
    func allVaultBytes() throws -> Data {
        var bytes = Data()
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let data = FileManager.default.contents(atPath: vaultPath + suffix) { bytes.append(data) }
        }
        return bytes
    }

    static func name(_ text: String) -> IdentityName { IdentityName(text)! }

    static func fullEnrollment(_ name: String, token: String = "rt") -> Enrollment {
        Enrollment(
            name: Self.name(name), provider: "transmit-eu", grant: .refreshToken, allowRules: ["uid:1001", "group:ops"],
            refreshAt: 0.5, refreshToken: Secret("\(token)-refresh-\(name)"), sessionID: Secret("sid-\(name)"),
            clientSecret: Secret("cs-\(name)"), accessToken: Secret("at-\(name)"),
            accessTokenExpiresAt: Date().addingTimeInterval(3600), tokenType: "Bearer")
    }
}
