import Foundation
import GRDB
import Testing
import TokendCore
import TokendVault

/// The `tokend vault` commands, run as a user runs them: the real binary,
/// real files, exit codes and messages.
@Suite("tokend vault commands")
final class VaultCommandTests {
    let directory: String
    var vaultPath: String { directory + "/state/vault.db" }
    var keyPath: String { directory + "/etc/vault.key" }
    var vaultArguments: [String] { ["--vault", vaultPath, "--key-file", keyPath] }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func initVault(identities: Int = 0) async throws {
        let result = try await CommandRunner.tokend(["vault", "init"] + vaultArguments)
        #expect(result.status == 0, "\(result.stderr)")
        guard identities > 0 else { return }
        let vault = try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)))
        try await vault.enroll(batch: (0..<identities).map { index in
            Enrollment(
                name: IdentityName("id-\(index)")!, provider: "transmit", refreshToken: Secret("rt-\(index)"),
                sessionID: Secret("sid-\(index)"), accessToken: Secret("at-\(index)"),
                accessTokenExpiresAt: Date().addingTimeInterval(3600))
        })
        try vault.close()
    }

    @Test func initCreatesAPrivateKeyFileAndVaultAndRefusesToOverwrite() async throws {
        try await initVault()
        let key = try #require(FileManager.default.contents(atPath: keyPath))
        #expect(key.count == 32)
        let keyMode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
        let vaultMode = try FileManager.default.attributesOfItem(atPath: vaultPath)[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        #expect(vaultMode == 0o600)

        let again = try await CommandRunner.tokend(["vault", "init"] + vaultArguments)
        #expect(again.status == 2)
        #expect(again.stderr.contains("already exists"))
        #expect(FileManager.default.contents(atPath: keyPath) == key, "the key file is left alone")
    }

    /// A bulk write (re-sealing 3,000 identities) leaves everything in the
    /// vault file and an empty write-ahead log, not a second copy of the
    /// vault beside it for the next agent to read through.
    @Test func aBulkWriteLeavesAnEmptyWriteAheadLog() async throws {
        try await initVault(identities: 3000)
        let rotated = try await CommandRunner.tokend(["vault", "rotate-dek"] + vaultArguments)
        #expect(rotated.status == 0, "\(rotated.stderr)")
        let log = try? FileManager.default.attributesOfItem(atPath: vaultPath + "-wal")[.size] as? Int
        #expect((log ?? 0) == 0, "the log holds \(log ?? 0) bytes")
        let verified = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(verified.stdout.contains("identities: 3000 ok: 3000 corrupt: 0"), "\(verified.stdout) \(verified.stderr)")
    }

    @Test func verifyReportsExactlyTheIdentityWithAFlippedByte() async throws {
        try await initVault(identities: 5)
        let clean = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(clean.status == 0)
        #expect(clean.stdout.contains("identities: 5 ok: 5 corrupt: 0"))

        let queue = try DatabaseQueue(path: vaultPath)
        try await queue.write { db in
            var sealed = try #require(try Data.fetchOne(db, sql: "SELECT access_token FROM identities WHERE name = 'id-3'"))
            sealed[sealed.count - 20] ^= 0x01
            try db.execute(sql: "UPDATE identities SET access_token = ? WHERE name = 'id-3'", arguments: [sealed])
        }
        try queue.close()

        let result = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(result.status == 1)
        #expect(result.stdout.contains("corrupt id-3: access_token of identity id-3 failed to decrypt"))
        #expect(result.stdout.contains("identities: 5 ok: 4 corrupt: 1"))
        #expect(!result.stdout.contains("corrupt id-0") && !result.stdout.contains("corrupt id-4"))

        // The others still load with their secrets.
        let vault = try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)), access: .reader)
        let loaded = try await vault.loadAll()
        #expect(loaded.filter { $0.record.state == .corrupt }.map(\.record.name.rawValue) == ["id-3"])
        #expect(loaded.first { $0.record.name.rawValue == "id-4" }?.secrets.refreshToken?.exposedValue == "rt-4")
    }

    @Test func wrongKeyAndInsecureKeyFileHaveTheirOwnExitCodes() async throws {
        try await initVault(identities: 1)
        let otherKey = directory + "/other.key"
        _ = FileManager.default.createFile(
            atPath: otherKey, contents: Data((0..<32).map { UInt8($0) }), attributes: [.posixPermissions: 0o600])
        let before = FileManager.default.contents(atPath: vaultPath)

        let wrong = try await CommandRunner.tokend(["vault", "rotate-dek", "--vault", vaultPath, "--key-file", otherKey])
        #expect(wrong.status == 3)
        #expect(wrong.stderr.contains("vault key does not match this vault"))
        #expect(FileManager.default.contents(atPath: vaultPath) == before, "vault untouched")

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyPath)
        let insecure = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(insecure.status == 4)
        #expect(insecure.stderr.contains("chmod 600 \(keyPath)"))

        let missing = try await CommandRunner.tokend(["vault", "verify", "--vault", directory + "/nope.db", "--key-file", otherKey])
        #expect(missing.status == 5)
        #expect(missing.stderr.contains("tokend vault init"))
    }

    @Test func rotateKEKThenOnlyTheNewKeyOpens() async throws {
        try await initVault(identities: 3)
        let newKey = directory + "/etc/new.key"
        let rotated = try await CommandRunner.tokend(["vault", "rotate-kek"] + vaultArguments + ["--new-key-file", newKey])
        #expect(rotated.status == 0, "\(rotated.stderr)")
        let old = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(old.status == 3)
        let new = try await CommandRunner.tokend(["vault", "verify", "--vault", vaultPath, "--key-file", newKey])
        #expect(new.status == 0)
        #expect(new.stdout.contains("ok: 3 corrupt: 0"))
    }

    /// The new key file's name must survive a power loss before the vault
    /// relies on it: its directory is synced before the commit that makes
    /// the new key the only one. Watched with strace on the real binary.
    @Test func rotateKEKSyncsTheNewKeysDirectoryBeforeCommitting() async throws {
        try await initVault(identities: 1)
        let newKey = directory + "/etc/new.key"
        let trace = directory + "/trace"
        let traced = try await CommandRunner.run(
            "/usr/bin/strace",
            ["-f", "-qq", "-e", "trace=openat,fsync,fdatasync", "-o", trace, CommandRunner.tokendPath, "vault", "rotate-kek"]
                + vaultArguments + ["--new-key-file", newKey])
        #expect(traced.status == 0, "\(traced.stderr)")
        let lines = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").map(String.init)
        func descriptor(_ line: String) -> String? { line.components(separatedBy: " = ").last.map { $0.trimmingCharacters(in: .whitespaces) } }
        func syncIndex(after start: Int, of fd: String) -> Int? {
            lines.indices.first { $0 > start && (lines[$0].contains("fsync(\(fd))") || lines[$0].contains("fdatasync(\(fd))")) }
        }
        let keyOpen = try #require(lines.firstIndex { $0.contains("\"\(newKey)\"") && $0.contains("O_CREAT") }, "\(lines)")
        let keyFD = try #require(descriptor(lines[keyOpen]))
        let keySync = try #require(syncIndex(after: keyOpen, of: keyFD))
        let directoryOpen = try #require(
            lines.indices.first { $0 > keyOpen && lines[$0].contains("\"\(directory)/etc\"") && lines[$0].contains("O_DIRECTORY") },
            "the key's directory was never opened to be synced: \(lines)")
        let directoryFD = try #require(descriptor(lines[directoryOpen]))
        let directorySync = try #require(syncIndex(after: directoryOpen, of: directoryFD))
        // The commit: the next sync of the vault's write-ahead log.
        let walOpen = try #require(lines.firstIndex { $0.contains("vault.db-wal\"") })
        let walFD = try #require(descriptor(lines[walOpen]))
        let commit = try #require(lines.indices.first { $0 > keySync && (lines[$0].contains("fsync(\(walFD))") || lines[$0].contains("fdatasync(\(walFD))")) })
        #expect(keySync < commit && directorySync < commit, "key synced at \(keySync), directory at \(directorySync), commit at \(commit)")
    }

    @Test func maintenanceRefusesToRunBesideTheWriter() async throws {
        try await initVault(identities: 1)
        let agent = try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)))
        let refused = try await CommandRunner.tokend(["vault", "rotate-dek"] + vaultArguments)
        #expect(refused.status == 6)
        #expect(refused.stderr.contains("in use by another process"))
        let verify = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
        #expect(verify.status == 0, "verify only reads, so it runs beside the agent")
        try agent.close()
    }

    /// `rotate-dek` killed with SIGKILL at random points, again and again,
    /// against 5,000 identities: every value must still open afterwards.
    @Test func rotateDEKSurvivesKillNineAtAnyPoint() async throws {
        let count = 5_000
        try await initVault(identities: count)

        // Time one full run to know the window worth aiming kills into.
        let clock = ContinuousClock()
        let start = clock.now
        let full = try await CommandRunner.tokend(["vault", "rotate-dek"] + vaultArguments)
        var window = clock.now - start
        #expect(full.status == 0, "\(full.stderr)")

        var generator = SystemRandomNumberGenerator()
        var kills = 0
        var attempts = 0
        while kills < 24 && attempts < 60 {
            attempts += 1
            let delay = window * Double.random(in: 0.05...0.95, using: &generator)
            let began = clock.now
            let run = try await CommandRunner.tokend(["vault", "rotate-dek"] + vaultArguments, killAfter: delay)
            if run.wasKilled {
                kills += 1
                let info = try await CommandRunner.tokend(["vault", "verify"] + vaultArguments)
                #expect(info.status == 0, "after kill \(kills): \(info.stdout) \(info.stderr)")
            } else {
                #expect(run.status == 0, "\(run.stderr)")
                // It finished before the kill: the machine got faster (the
                // first run shared it with others); aim into the new window.
                window = min(window, clock.now - began)
            }
        }
        #expect(kills >= 20, "only \(kills) of \(attempts) runs were killed mid-rotation")

        let vault = try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)))
        let loaded = try await vault.loadAll()
        #expect(loaded.count == count)
        let wrong = loaded.filter { identity in
            let index = identity.record.name.rawValue.dropFirst(3)
            return identity.secrets.refreshToken?.exposedValue != "rt-\(index)"
                || identity.secrets.sessionID?.exposedValue != "sid-\(index)"
                || identity.secrets.accessToken?.exposedValue != "at-\(index)"
        }
        #expect(wrong.isEmpty, "\(wrong.count) identities lost a value")
        // A final uninterrupted run leaves a single key term.
        _ = try await vault.rotateDEK()
        #expect(try await vault.info().keyTerms.count == 1)
        try vault.close()
    }
}
