import Foundation
import GRDB
import Testing
import TokendCore
@testable import TokendVault

@Suite("Vault refresh API: atomic commits, intents, generations")
struct VaultRefreshTests {
    let alice = VaultFixture.name("alice")

    func commit(_ generation: Int64, access: String, rotateTo: String? = nil) -> RefreshCommit {
        RefreshCommit(
            name: alice, expectedGeneration: generation, accessToken: Secret(access), issuedAt: Date(),
            expiresAt: Date().addingTimeInterval(300), newRefreshToken: rotateTo.map(Secret.init))
    }

    /// The used refresh token is dead once rotated; nothing could use it
    /// without tripping the provider's reuse detection, so it is not kept.
    @Test func rotationReplacesTheRefreshTokenAndKeepsNoCopyOfTheOldOne() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt-1")))
        try await vault.recordIntent(RefreshIntent(name: alice, generation: 1, startedAt: Date()))
        #expect(try await vault.pendingIntents().map(\.generation) == [1])

        #expect(try await vault.commit(commit(1, access: "at-1", rotateTo: "rt-2")) == 2)
        var loaded = try #require(try await vault.identity(named: alice))
        #expect(loaded.record.state == .fresh)
        #expect(loaded.record.generation == 2)
        #expect(loaded.secrets.refreshToken?.exposedValue == "rt-2")
        #expect(loaded.secrets.previousRefreshToken == nil)
        #expect(loaded.secrets.accessToken?.exposedValue == "at-1")
        #expect(try await vault.pendingIntents().isEmpty, "the commit clears the intent")

        // rt-2 used again without rotation.
        #expect(try await vault.commit(commit(2, access: "at-2")) == 3)
        loaded = try #require(try await vault.identity(named: alice))
        #expect(loaded.secrets.refreshToken?.exposedValue == "rt-2")
        #expect(loaded.secrets.previousRefreshToken == nil)
        #expect(loaded.secrets.accessToken?.exposedValue == "at-2")
    }

    /// REMOVE then ENROLL of the same name: generations go on from the
    /// removed identity's, so a refresh begun before the removal can never
    /// commit onto the new secrets.
    @Test func aNameEnrolledAgainAfterRemovalContinuesItsGenerations() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt-1")))
        // A refresh starts from generation 1; meanwhile the name is removed and enrolled again.
        try await vault.recordIntent(RefreshIntent(name: alice, generation: 1, startedAt: Date()))
        #expect(try await vault.remove(alice))
        let generation = try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt-new")))
        #expect(generation == 2)
        // The late result of the old family is refused.
        let late = try await vault.commit(batch: [commit(1, access: "at-old-family", rotateTo: "rt-old-family")])
        #expect(late == [nil])
        let loaded = try #require(try await vault.identity(named: alice))
        #expect(loaded.secrets.refreshToken?.exposedValue == "rt-new")
        #expect(loaded.secrets.accessToken == nil)
    }

    /// SSO across apps: a second app joins the first's session inside the
    /// vault; a new session id from either is followed by both.
    @Test func identitiesOfOneSessionFollowANewSessionID() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        let app2 = VaultFixture.name("app2")
        try await vault.enroll(Enrollment(name: alice, provider: "p1", refreshToken: Secret("rt-1"), sessionID: Secret("sid-1")))
        let (generation, group) = try await vault.joinSession(Enrollment(name: app2, provider: "p2"), from: alice)
        #expect(generation == 1)
        var first = try #require(try await vault.identity(named: alice))
        var second = try #require(try await vault.identity(named: app2))
        #expect(first.record.sessionGroup == group && second.record.sessionGroup == group)
        #expect(second.secrets.sessionID?.exposedValue == "sid-1")
        #expect(second.record.grant == .session)

        // Silent authentication of app2 returns a new session id.
        try await vault.commit(RefreshCommit(
            name: app2, expectedGeneration: 1, accessToken: Secret("at-2"), issuedAt: Date(),
            expiresAt: Date().addingTimeInterval(300), newSessionID: Secret("sid-2")))
        first = try #require(try await vault.identity(named: alice))
        second = try #require(try await vault.identity(named: app2))
        #expect(first.secrets.sessionID?.exposedValue == "sid-2")
        #expect(second.secrets.sessionID?.exposedValue == "sid-2")
        #expect(first.record.generation == 1, "the other member's own refresh state is untouched")

        await #expect(throws: VaultError.self) {
            _ = try await vault.joinSession(Enrollment(name: VaultFixture.name("x"), provider: "p2"), from: VaultFixture.name("nobody"))
        }
    }

    @Test func aLateResultCannotOverwriteAReEnrolledIdentity() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt-old")))
        try await vault.recordIntent(RefreshIntent(name: alice, generation: 1, startedAt: Date()))
        #expect(try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt-new"))) == 2)
        #expect(try await vault.pendingIntents().isEmpty, "re-enrolling drops the stale intent")

        let error = try await #require(throws: VaultError.self) {
            try await vault.commit(commit(1, access: "late", rotateTo: "rt-late"))
        }
        #expect(error.code == .generationConflict)
        let loaded = try #require(try await vault.identity(named: alice))
        #expect(loaded.secrets.refreshToken?.exposedValue == "rt-new")
        #expect(loaded.secrets.accessToken == nil)

        let missing = try await #require(throws: VaultError.self) {
            try await vault.commit(RefreshCommit(
                name: VaultFixture.name("ghost"), expectedGeneration: 1, accessToken: Secret("x"),
                issuedAt: Date(), expiresAt: Date()))
        }
        #expect(missing.code == .notFound)
    }

    @Test func batchCommitReportsConflictsPerEntry() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(batch: ["a", "b"].map { Enrollment(name: VaultFixture.name($0), provider: "p", refreshToken: Secret("rt")) })
        let results = try await vault.commit(batch: [
            RefreshCommit(name: VaultFixture.name("a"), expectedGeneration: 1, accessToken: Secret("x"), issuedAt: Date(), expiresAt: Date()),
            RefreshCommit(name: VaultFixture.name("b"), expectedGeneration: 7, accessToken: Secret("y"), issuedAt: Date(), expiresAt: Date()),
        ])
        #expect(results == [2, nil])
    }

    @Test func enrollmentSetsStateFromTheAccessTokenGiven() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt")))
        try await vault.enroll(VaultFixture.fullEnrollment("bob"))
        try await vault.enroll(Enrollment(
            name: VaultFixture.name("carol"), provider: "p", accessToken: Secret("expired"),
            accessTokenExpiresAt: Date().addingTimeInterval(-5)))
        let states = try await vault.list(prefix: nil, after: nil, limit: 10).map(\.state)
        #expect(states == [.pending, .fresh, .pending])
        let carol = try #require(try await vault.identity(named: VaultFixture.name("carol")))
        #expect(carol.record.grant == .clientCredentials)
        #expect(carol.secrets.accessToken == nil, "an expired access token is not kept")
    }

    @Test func stateUpdatesAndRemovalPersist() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        try await vault.enroll(Enrollment(name: alice, provider: "p", refreshToken: Secret("rt")))
        try await vault.updateState(alice, to: .reauthRequired, lastError: "invalid_grant")
        try vault.close()
        let reopened = try fixture.open()
        let record = try #require(try await reopened.list(prefix: nil, after: nil, limit: 1).first)
        #expect(record.state == .reauthRequired)
        #expect(record.lastError == "invalid_grant")
        #expect(try await reopened.remove(alice))
        #expect(try await reopened.remove(alice) == false)
        #expect(try await reopened.loadAll().isEmpty)
    }

    @Test func listFiltersByPrefixAndPaginates() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        let names = ["svc-a", "svc-b", "svc-c", "user:1", "user:2"]
        try await vault.enroll(batch: names.map { Enrollment(name: VaultFixture.name($0), provider: "p") })
        #expect(try await vault.list(prefix: "svc-", after: nil, limit: 2).map(\.name.rawValue) == ["svc-a", "svc-b"])
        #expect(try await vault.list(prefix: "svc-", after: VaultFixture.name("svc-b"), limit: 2).map(\.name.rawValue) == ["svc-c"])
        #expect(try await vault.list(prefix: "user:", after: nil, limit: 10).count == 2)
        #expect(try await vault.list(prefix: nil, after: nil, limit: 100).count == 5)
    }

    @Test func concurrentReadersNeverSeeBusyWhileCommitsRun() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        let count = 50
        try await vault.enroll(batch: (0..<count).map {
            Enrollment(name: VaultFixture.name("id-\($0)"), provider: "p", refreshToken: Secret("rt-0"))
        })
        // A second process-like reader: its own read-only pool on the same file.
        let reader = try fixture.open(access: .reader)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for round in 1...10 {
                    let batch = (0..<count).map { index in
                        RefreshCommit(
                            name: VaultFixture.name("id-\(index)"), expectedGeneration: Int64(round),
                            accessToken: Secret("at-\(round)"), issuedAt: Date(), expiresAt: Date().addingTimeInterval(60),
                            newRefreshToken: Secret("rt-\(round)"))
                    }
                    let results = try await vault.commit(batch: batch)
                    #expect(results.allSatisfy { $0 == Int64(round + 1) })
                }
            }
            for store in [vault, reader] {
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<20 {
                            let loaded = try await store.loadAll()
                            #expect(loaded.count == count)
                            #expect(loaded.allSatisfy { $0.record.state != .corrupt })
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func commitsAreDurableWALWithSynchronousFull() async throws {
        let fixture = try VaultFixture()
        try fixture.create().close()
        let vault = try fixture.open()
        let (journal, synchronous) = try await vault.pool.write { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(journal == "wal")
        #expect(synchronous == 2, "2 is FULL: every commit syncs the WAL")
    }

    @Test func aSecondWriterIsRefusedButReadersAreNot() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        let error = try #require(throws: VaultError.self) { try fixture.open() }
        #expect(error.code == .locked)
        let reader = try fixture.open(access: .reader)
        #expect(try await reader.loadAll().isEmpty)
        await #expect(throws: VaultError.self) { try await reader.enroll(VaultFixture.fullEnrollment("x")) }
        try vault.close()
    }

    @Test func aVaultFromANewerTokendIsRefused() async throws {
        let fixture = try VaultFixture()
        try fixture.create().close()
        try fixture.tamper { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
        }
        let error = try #require(throws: VaultError.self) { try fixture.open() }
        #expect(error.code == .incompatible)
    }

    @Test func aFileThatIsNotAVaultIsAClearError() throws {
        let fixture = try VaultFixture()
        _ = FileManager.default.createFile(
            atPath: fixture.vaultPath, contents: Data(repeating: 0x41, count: 4096), attributes: [.posixPermissions: 0o600])
        _ = try KeyEncryptionKey.generate(at: fixture.keyPath)
        let error = try #require(throws: VaultError.self) { try fixture.open() }
        #expect(error.code == .storage)
        #expect(error.message.contains(fixture.vaultPath))
    }
}
