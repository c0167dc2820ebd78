import Crypto
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

/// The envelope's header and the plaintext's text are read with hand-made
/// fast paths at load; they must agree with the plain definitions.
@Suite("Sealed value parsing")
struct SealedValueParsingTests {
    @Test func theTermIsReadFromTheHeaderAndAnythingElseIsRefused() {
        let body = [UInt8](repeating: 0xAB, count: 28)
        #expect(KeyRing.term(of: Data([1, 0, 0, 0, 7] + body)) == 7)
        #expect(KeyRing.term(of: Data([1, 0x12, 0x34, 0x56, 0x78] + body)) == 0x1234_5678)
        #expect(KeyRing.term(of: Data([1, 0xFF, 0xFF, 0xFF, 0xFF] + body)) == UInt32.max)
        // A slice whose indices do not start at zero, as a row read from a
        // larger buffer can be.
        let framed = Data([9, 9, 1, 0, 0, 1, 2] + body)
        #expect(KeyRing.term(of: framed.dropFirst(2)) == 258)
        #expect(KeyRing.term(of: Data([2, 0, 0, 0, 7] + body)) == nil, "another format version")
        #expect(KeyRing.term(of: Data([1, 0, 0, 0, 7] + body.dropLast())) == nil, "too short for a nonce and a tag")
        #expect(KeyRing.term(of: Data()) == nil)
    }

    @Test func textIsTheValidatedStringForEveryKindOfBytes() {
        var random = SystemRandomNumberGenerator()
        var samples: [[UInt8]] = [
            [], Array("at-1".utf8), Array(String(repeating: "eyJ.abc-_~", count: 90).utf8), Array("tök€n 🙂".utf8),
            [0xFF], [0xC3], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0xAF], Array("token".utf8) + [0x80],
            Array("sixteen-bytes-ab".utf8) + [0xF4, 0x90, 0x80, 0x80], [0x00, 0x41],
        ]
        for length in [1, 7, 8, 9, 15, 16, 17, 900] {
            samples.append((0..<length).map { _ in UInt8.random(in: 0...0x7F, using: &random) })
            samples.append((0..<length).map { _ in UInt8.random(in: 0...0xFF, using: &random) })
        }
        for bytes in samples {
            #expect(KeyRing.text(Data(bytes)) == String(validating: bytes, as: UTF8.self), "\(bytes)")
        }
    }

    @Test func aValueThatDecryptsToInvalidUTF8IsCorrupt() throws {
        let key = SymmetricKey(size: .bits256)
        let ring = KeyRing(keys: [3: key], activeTerm: 3)
        let name = IdentityName("alice")!
        let box = try AES.GCM.seal(
            Data([0x61, 0xFF, 0x62]), using: key, nonce: AES.GCM.Nonce(),
            authenticating: KeyRing.associatedData(identity: name, kind: .accessToken, term: 3))
        let envelope = Data([KeyRing.envelopeVersion, 0, 0, 0, 3]) + box.combined!
        #expect(throws: VaultError.self) { try ring.open(envelope, identity: name, kind: .accessToken) }
        do {
            _ = try ring.open(envelope, identity: name, kind: .accessToken)
        } catch let error as VaultError {
            #expect("\(error)".contains("invalid UTF-8"), "\(error)")
        }
    }
}
