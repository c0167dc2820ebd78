import Foundation
import GRDB
import Testing
import TokendCore
@testable import TokendVault

@Suite("Vault sealing: values round-trip, never hit disk in plaintext, cannot be moved")
struct VaultSealingTests {
    @Test func everySecretColumnRoundTripsAndNoPlaintextReachesDisk() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        let refresh = "RT-PLAINTEXT-MARKER-7f3a9c"
        try await vault.enroll(
            Enrollment(
                name: VaultFixture.name("billing"), provider: "p", refreshToken: Secret(refresh),
                sessionID: Secret("SID-PLAINTEXT-MARKER"), clientSecret: Secret("CS-PLAINTEXT-MARKER"),
                accessToken: Secret("AT-PLAINTEXT-MARKER"), accessTokenExpiresAt: Date().addingTimeInterval(600)))
        // Rotate once: the used refresh token must not linger anywhere.
        try await vault.commit(
            RefreshCommit(
                name: VaultFixture.name("billing"), expectedGeneration: 1, accessToken: Secret("AT2-PLAINTEXT-MARKER"),
                issuedAt: Date(), expiresAt: Date().addingTimeInterval(600), newRefreshToken: Secret("RT2-PLAINTEXT-MARKER")))

        let loaded = try #require(try await vault.identity(named: VaultFixture.name("billing")))
        #expect(loaded.secrets.refreshToken?.exposedValue == "RT2-PLAINTEXT-MARKER")
        #expect(loaded.secrets.previousRefreshToken == nil)
        #expect(loaded.secrets.accessToken?.exposedValue == "AT2-PLAINTEXT-MARKER")
        #expect(loaded.secrets.sessionID?.exposedValue == "SID-PLAINTEXT-MARKER")
        #expect(loaded.secrets.clientSecret?.exposedValue == "CS-PLAINTEXT-MARKER")

        // Check the bytes while the WAL still holds the writes, then again
        // after a checkpoint folded them into the main file.
        for _ in 0..<2 {
            let bytes = try fixture.allVaultBytes()
            #expect(!bytes.isEmpty)
            for marker in ["PLAINTEXT-MARKER", "7f3a9c"] {
                #expect(bytes.range(of: Data(marker.utf8)) == nil, "found \(marker) in the vault files")
            }
            try vault.close()
            let reopened = try fixture.open()
            try reopened.close()
        }
    }

    @Test func ciphertextCopiedToAnotherIdentityFailsAndMarksOnlyThatIdentity() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: ["alice", "bob", "carol"].map { VaultFixture.fullEnrollment($0) })
        try vault.close()
        try fixture.tamper { db in
            try db.execute(sql: "UPDATE identities SET refresh_token = (SELECT refresh_token FROM identities WHERE name = 'alice') WHERE name = 'bob'")
        }
        let reopened = try fixture.open()
        let loaded = try await reopened.loadAll()
        let states = Dictionary(uniqueKeysWithValues: loaded.map { ($0.record.name.rawValue, $0.record.state) })
        #expect(states == ["alice": .fresh, "bob": .corrupt, "carol": .fresh])
        let bob = try #require(loaded.first { $0.record.name.rawValue == "bob" })
        #expect(bob.secrets.refreshToken == nil)
        #expect(bob.record.lastError?.contains("refresh_token of identity bob failed to decrypt") == true)
        #expect(loaded.first { $0.record.name.rawValue == "alice" }?.secrets.refreshToken?.exposedValue == "rt-refresh-alice")

        // The corrupt state is persisted, so it shows after a restart and in lists.
        let listed = try await reopened.list(prefix: nil, after: nil, limit: 10)
        #expect(listed.first { $0.name.rawValue == "bob" }?.state == .corrupt)
    }

    @Test func ciphertextSwappedBetweenColumnsFailsToOpen() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: ["alice", "bob"].map { VaultFixture.fullEnrollment($0) })
        try vault.close()
        try fixture.tamper { db in
            try db.execute(sql: "UPDATE identities SET access_token = refresh_token, refresh_token = access_token WHERE name = 'alice'")
        }
        let loaded = try await fixture.open().loadAll()
        #expect(loaded.map(\.record.state) == [.corrupt, .fresh])
    }

    @Test func reEnrollingACorruptIdentityRepairsIt() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(VaultFixture.fullEnrollment("alice"))
        try vault.close()
        try fixture.tamper { db in
            try db.execute(sql: "UPDATE identities SET session_id = zeroblob(40) WHERE name = 'alice'")
        }
        let reopened = try fixture.open()
        #expect(try await reopened.loadAll().first?.record.state == .corrupt)
        let generation = try await reopened.enroll(VaultFixture.fullEnrollment("alice", token: "new"))
        #expect(generation == 2)
        let repaired = try #require(try await reopened.identity(named: VaultFixture.name("alice")))
        #expect(repaired.record.state == .fresh)
        #expect(repaired.secrets.refreshToken?.exposedValue == "new-refresh-alice")
    }

    @Test func aLoadOverSeveralBatchesOpensEveryValueInOrderAndMarksOnlyTheTamperedOnes() async throws {
        // More identities than one batch of values opened together, so
        // batch edges and the workers' ranges are crossed.
        let count = SealedIdentity.batchSize * 2 + 17
        let names = (0..<count).map { String(format: "id-%05d", $0) }
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: names.map { VaultFixture.fullEnrollment($0) })
        try vault.close()
        // One value moved between identities in the first batch, one
        // truncated near the end of the second, one metadata value this
        // build cannot read in the third (a row that fails before opening).
        let moved = names[5], truncated = names[SealedIdentity.batchSize * 2 - 3], unreadable = names[count - 2]
        try fixture.tamper { db in
            try db.execute(
                sql: "UPDATE identities SET access_token = (SELECT access_token FROM identities WHERE name = ?) WHERE name = ?",
                arguments: [names[6], moved])
            try db.execute(sql: "UPDATE identities SET client_secret = substr(client_secret, 1, 30) WHERE name = ?", arguments: [truncated])
            try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
            try db.execute(sql: "UPDATE identities SET grant_kind = 'telepathy' WHERE name = ?", arguments: [unreadable])
        }
        let loaded = try await fixture.open().loadAll()
        #expect(loaded.map(\.record.name.rawValue) == names)
        let corrupt = loaded.filter { $0.record.state == .corrupt }.map(\.record.name.rawValue)
        #expect(corrupt == [moved, truncated, unreadable])
        for identity in loaded where identity.record.state == .corrupt {
            #expect(identity.secrets == IdentitySecrets())
        }
        for identity in loaded where identity.record.state != .corrupt {
            let name = identity.record.name.rawValue
            #expect(identity.secrets.accessToken?.exposedValue == "at-\(name)")
            #expect(identity.secrets.refreshToken?.exposedValue == "rt-refresh-\(name)")
            #expect(identity.secrets.clientSecret?.exposedValue == "cs-\(name)")
        }
        #expect(loaded.first { $0.record.name.rawValue == truncated }?.record.lastError?.contains("client_secret") == true)
        #expect(loaded.first { $0.record.name.rawValue == unreadable }?.record.lastError?.contains("grant_kind") == true)
    }
}
