import Crypto
import Foundation
import Testing
import TokendCore
@testable import TokendVault

@Suite("Vault keys: KEK sources, key check, rotation")
struct VaultKeyTests {
    @Test func wrongKeyIsAClearErrorAtOpenAndLeavesTheVaultUntouched() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(VaultFixture.fullEnrollment("alice"))
        try vault.close()
        let before = FileManager.default.contents(atPath: fixture.vaultPath)
        let walBefore = FileManager.default.contents(atPath: fixture.vaultPath + "-wal") ?? Data()

        let otherKey = fixture.directory + "/other.key"
        _ = try KeyEncryptionKey.generate(at: otherKey)
        let error = try #require(throws: VaultError.self) {
            try SQLiteVault.open(at: fixture.vaultPath, kek: try KeyEncryptionKey.load(from: .file(otherKey)))
        }
        #expect(error.code == .keyMismatch)
        #expect(error.message.contains("vault key does not match this vault"))
        #expect(FileManager.default.contents(atPath: fixture.vaultPath) == before)
        let wal = FileManager.default.contents(atPath: fixture.vaultPath + "-wal") ?? Data()
        #expect(wal == walBefore, "a refused open writes nothing to the WAL")
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660])
    func keyFileReadableByOthersIsRefused(mode: Int) throws {
        let fixture = try VaultFixture()
        _ = try KeyEncryptionKey.generate(at: fixture.keyPath)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: fixture.keyPath)
        let error = try #require(throws: VaultError.self) { try KeyEncryptionKey.load(from: .file(fixture.keyPath)) }
        #expect(error.code == .insecurePermissions)
        #expect(error.message.contains(fixture.keyPath))
        #expect(error.message.contains("chmod 600"))
    }

    @Test(arguments: [0o600, 0o400])
    func privateKeyFileModesAreAccepted(mode: Int) throws {
        let fixture = try VaultFixture()
        _ = try KeyEncryptionKey.generate(at: fixture.keyPath)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: fixture.keyPath)
        _ = try KeyEncryptionKey.load(from: .file(fixture.keyPath))
    }

    @Test func base64KeyFileOpensTheSameVaultAsTheRawOne() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(VaultFixture.fullEnrollment("alice"))
        try vault.close()
        let raw = try #require(FileManager.default.contents(atPath: fixture.keyPath))
        let base64Path = fixture.directory + "/vault.key.b64"
        _ = FileManager.default.createFile(
            atPath: base64Path, contents: Data((raw.base64EncodedString() + "\n").utf8), attributes: [.posixPermissions: 0o400])
        let reopened = try SQLiteVault.open(at: fixture.vaultPath, kek: try KeyEncryptionKey.load(from: .file(base64Path)))
        #expect(try await reopened.loadAll().first?.secrets.refreshToken?.exposedValue == "rt-refresh-alice")
    }

    @Test(arguments: [Data(count: 31), Data(count: 33), Data("not base64 at all".utf8), Data()])
    func malformedKeyFilesAreRefused(contents: Data) throws {
        let fixture = try VaultFixture()
        _ = FileManager.default.createFile(atPath: fixture.keyPath, contents: contents, attributes: [.posixPermissions: 0o600])
        let error = try #require(throws: VaultError.self) { try KeyEncryptionKey.load(from: .file(fixture.keyPath)) }
        #expect(error.code == .malformedKey)
    }

    @Test func systemdCredentialIsReadFromTheCredentialsDirectory() throws {
        let fixture = try VaultFixture()
        _ = try KeyEncryptionKey.generate(at: fixture.directory + "/creds/vault-key")
        let kek = try KeyEncryptionKey.load(
            from: .credential("vault-key"), environment: ["CREDENTIALS_DIRECTORY": fixture.directory + "/creds"])
        #expect(kek.origin.contains("creds/vault-key"))

        let unset = try #require(throws: VaultError.self) {
            try KeyEncryptionKey.load(from: .credential("vault-key"), environment: [:])
        }
        #expect(unset.code == .missingFile)
        #expect(unset.message.contains("CREDENTIALS_DIRECTORY"))
        #expect(throws: VaultError.self) {
            try KeyEncryptionKey.load(from: .credential("../etc/passwd"), environment: ["CREDENTIALS_DIRECTORY": fixture.directory])
        }
    }

    @Test func vaultFileReadableByOthersIsRefused() async throws {
        let fixture = try VaultFixture()
        try fixture.create().close()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: fixture.vaultPath)
        let error = try #require(throws: VaultError.self) { try fixture.open() }
        #expect(error.code == .insecurePermissions)
        #expect(error.message.contains(fixture.vaultPath))
    }

    @Test func createdFilesArePrivateWhateverTheUmask() async throws {
        let fixture = try VaultFixture()
        let old = umask(0o022)
        defer { umask(old) }
        let vault = try fixture.create()
        try await vault.enroll(VaultFixture.fullEnrollment("alice"))
        for file in [fixture.vaultPath, fixture.vaultPath + "-wal", fixture.keyPath] {
            let mode = try #require(try FilePermissions.mode(of: file))
            #expect(mode == 0o600, "\(file) has mode \(String(mode, radix: 8))")
        }
    }

    @Test func rotateKEKMakesTheOldKeyFailAndTheNewOneWork() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: ["alice", "bob"].map { VaultFixture.fullEnrollment($0) })
        let newKeyPath = fixture.directory + "/new.key"
        try await vault.rotateKEK(to: try KeyEncryptionKey.generate(at: newKeyPath))
        // The running instance keeps working after the rotation.
        try await vault.enroll(VaultFixture.fullEnrollment("carol"))
        try vault.close()

        let old = try #require(throws: VaultError.self) { try fixture.open() }
        #expect(old.code == .keyMismatch)
        let reopened = try SQLiteVault.open(at: fixture.vaultPath, kek: try KeyEncryptionKey.load(from: .file(newKeyPath)))
        let loaded = try await reopened.loadAll()
        #expect(loaded.map(\.record.state) == [.fresh, .fresh, .fresh])
        #expect(loaded.map { $0.secrets.sessionID?.exposedValue } == ["sid-alice", "sid-bob", "sid-carol"])
    }

    @Test func rotateDEKResealsEveryValueAndRetiresTheOldTerm() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: (0..<1_200).map { VaultFixture.fullEnrollment("id-\($0)") })
        let report = try await vault.rotateDEK(batchSize: 100)
        #expect(report.newTerm == 2)
        #expect(report.retiredTerms == [1])
        // Five sealed columns per identity; previous_refresh_token is empty.
        #expect(report.resealedValues == 1_200 * 4)
        try vault.close()

        let reopened = try fixture.open()
        let info = try await reopened.info()
        #expect(info.keyTerms == [2])
        #expect(try await reopened.verify().corrupt.isEmpty)
        let loaded = try await reopened.loadAll()
        #expect(loaded.count == 1_200)
        #expect(loaded.allSatisfy { $0.secrets.refreshToken?.exposedValue == "rt-refresh-\($0.record.name)" })
    }
}
