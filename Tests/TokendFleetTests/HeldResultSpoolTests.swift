import Foundation
import Logging
import PostgresNIO
import Testing
import TokendCore
import TokendEngine
import TokendFleet
import TokendTestKit

/// Results the fleet store refused, kept sealed on the host and committed
/// first by the next run.
@Suite(
    "Held results: kept sealed on this host until the fleet store takes them",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct HeldResultSpoolTests {
    static func result(_ name: String, generation: Int64 = 1) -> RefreshCommit {
        RefreshCommit(
            name: FleetFixture.name(name), expectedGeneration: generation, accessToken: Secret("at-held-\(name)"),
            issuedAt: Date(timeIntervalSince1970: 1_900_000_000), expiresAt: Date(timeIntervalSince1970: 1_900_000_600),
            newRefreshToken: Secret("rt-held-\(name)"), newSessionID: Secret("sid-held-\(name)"))
    }

    @Test func aKeptResultComesBackWholeFromAPrivateFileThatHoldsNoTokenInTheClear() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let spool = try HeldResultSpool(directory: fixture.directory + "/held", vault: vault)
        try spool.keep(Self.result("alice"))
        try spool.keep(Self.result("alice", generation: 2))  // replaces the first
        let file = fixture.directory + "/held/alice.held"
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int)
        #expect(mode & 0o077 == 0)
        let bytes = try String(contentsOfFile: file, encoding: .isoLatin1)
        #expect(!bytes.contains("at-held") && !bytes.contains("rt-held") && !bytes.contains("sid-held"))
        let loaded = spool.load()
        #expect(loaded == [Self.result("alice", generation: 2)])
        spool.drop(FleetFixture.name("alice"))
        spool.drop(FleetFixture.name("alice"))  // twice: nothing to do
        #expect(spool.load().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    @Test func brokenMovedOrForeignFilesAreSkippedAndLeftInPlace() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let directory = fixture.directory + "/held"
        let spool = try HeldResultSpool(directory: directory, vault: vault)
        try spool.keep(Self.result("alice"))
        try spool.keep(Self.result("bob"))
        // bob's file renamed to carol's: the name inside, and the sealing, disagree.
        try FileManager.default.moveItem(atPath: directory + "/bob.held", toPath: directory + "/carol.held")
        // alice's sealed values pasted into dave's record: they do not open for dave.
        var record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/alice.held"))) as! [String: Any]
        record["name"] = "dave"
        try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: directory + "/dave.held"))
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: directory + "/erin.held"))
        try Data([0, 1, 2, 0xFF]).write(to: URL(fileURLWithPath: directory + "/frank.held"))
        try Data(count: HeldResultSpool.maximumFileSize + 1).write(to: URL(fileURLWithPath: directory + "/gina.held"))
        try FileManager.default.createDirectory(atPath: directory + "/hank.held", withIntermediateDirectories: false)
        record = ["name": "ivan", "generation": -3, "tokenType": "Bearer\r\n", "issuedAt": 0, "expiresAt": 0, "accessToken": ""]
        try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: directory + "/ivan.held"))
        try FileManager.default.createSymbolicLink(atPath: directory + "/judy.held", withDestinationPath: directory + "/alice.held")

        #expect(spool.load().map(\.name.rawValue) == ["alice"])
        for file in ["carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"] {
            #expect(FileManager.default.fileExists(atPath: "\(directory)/\(file).held"), "\(file) must be left for the operator")
        }
    }

    @Test func aSharedOrForeignDirectoryIsRefused() async throws {
        let fixture = try FleetFixture()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let directory = fixture.directory + "/open"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        #expect(throws: VaultError.self) { try HeldResultSpool(directory: directory, vault: vault) }
    }

    @Test func aResultTheStoreRefusedIsCommittedByTheNextRunWithoutAProviderCall() async throws {
        let fixture = try FleetFixture()
        let admin = try await fixture.create()
        defer { Task { await admin.close() } }
        let name = FleetFixture.name("alice")
        try await admin.enroll(Enrollment(
            name: name, provider: "p", refreshToken: Secret("rt-first"), accessToken: Secret("at-first"),
            accessTokenExpiresAt: Date().addingTimeInterval(3600)))
        // The store refuses every change to identities, as a database in
        // trouble would, after the provider has rotated the refresh token.
        try await fixture.sql { connection in
            try await connection.query(
                """
                CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql
                """, logger: FleetFixture.logger)
            try await connection.query(
                "CREATE TRIGGER refuse BEFORE UPDATE ON identities FOR EACH ROW EXECUTE FUNCTION refuse()",
                logger: FleetFixture.logger)
        }
        let directory = fixture.directory + "/held"

        let firstVault = try await fixture.open()
        let firstProvider = ScriptedProvider(name: "p")
        var settings = EngineSettings()
        settings.commitRetryDelays = [.milliseconds(10)]
        settings.heldResultRetry = .seconds(60)
        let first = RefreshEngine(
            vault: firstVault, exclusion: FleetExclusion(vault: firstVault, holder: "run-1", ttl: .seconds(30)),
            held: try HeldResultSpool(directory: directory, vault: firstVault), providers: ["p": firstProvider],
            clock: ContinuousClock(), settings: settings)
        try await first.start()
        let firstLoop = Task { try? await first.run() }
        _ = await first.refresh(name, force: true)
        #expect(firstProvider.callCount == 1)
        #expect(FileManager.default.fileExists(atPath: directory + "/alice.held"))
        firstLoop.cancel()
        await firstLoop.value
        await firstVault.close()  // the run ends with the result unstored

        try await fixture.sql { connection in
            try await connection.query("DROP TRIGGER refuse ON identities", logger: FleetFixture.logger)
        }
        let secondVault = try await fixture.open()
        defer { Task { await secondVault.close() } }
        let secondProvider = ScriptedProvider(name: "p")
        let second = RefreshEngine(
            vault: secondVault, exclusion: FleetExclusion(vault: secondVault, holder: "run-2", ttl: .seconds(30)),
            held: try HeldResultSpool(directory: directory, vault: secondVault), providers: ["p": secondProvider],
            clock: ContinuousClock())
        #expect(try await second.start().recovering == 1)
        let loop = Task { try? await second.run() }
        defer { loop.cancel() }
        #expect(await eventually { second.cache.snapshot(name)?.accessToken?.exposedValue == "at-p-1" })
        let stored = try #require(try await admin.identity(named: name))
        #expect(stored.secrets.refreshToken?.exposedValue == "rt-p-1")
        #expect(stored.record.generation == 2)
        #expect(secondProvider.callCount == 0)
        #expect(await eventually { !FileManager.default.fileExists(atPath: directory + "/alice.held") })
    }
}
