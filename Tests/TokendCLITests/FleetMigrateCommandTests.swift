import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendTestKit
import TokendVault

/// `tokend vault migrate` between the SQLite vault and the fleet store,
/// both ways, with the real binary and the real test cluster.
@Suite("tokend vault migrate", .enabled(if: FleetCLIFixture.available, FleetCLIFixture.skipReason))
struct FleetMigrateCommandTests {
    /// A SQLite vault with every kind of state: rich enrollments, a shared
    /// session, a committed refresh, an error, a removed name.
    static func seedSQLite(_ fleet: FleetCLIFixture, count: Int = 6, tokenSize: Int = 0) async throws {
        let vault = try SQLiteVault.create(at: fleet.sqlitePath, kek: try fleet.kek())
        try await vault.enroll(batch: (0..<count).map { FleetCLIFixture.enrollment($0, tokenSize: tokenSize) })
        guard count >= 5 else { return try vault.close() }
        _ = try await vault.joinSession(
            Enrollment(name: IdentityName("app-shared")!, provider: "other", allowRules: ["uid:42"]), from: IdentityName("id-0")!)
        _ = try await vault.commit(RefreshCommit(
            name: IdentityName("id-2")!, expectedGeneration: 1, accessToken: Secret("at-2-next"), tokenType: "DPoP",
            issuedAt: Date(), expiresAt: Date().addingTimeInterval(900), newRefreshToken: Secret("rt-2-next")))
        try await vault.updateState(IdentityName("id-3")!, to: .reauthRequired, lastError: "invalid_grant: refresh token revoked")
        try await vault.remove(IdentityName("id-4")!)
        try vault.close()
    }

    /// Every field of every identity, secrets included, times to the
    /// millisecond (PostgreSQL keeps microseconds, SQLite a double).
    static func snapshot(_ identities: [StoredIdentity]) -> [String] {
        func time(_ date: Date?) -> String { date.map { String(Int64(($0.timeIntervalSince1970 * 1000).rounded())) } ?? "-" }
        return identities.map { identity in
            let r = identity.record
            let secrets = SecretKind.allCases.map { identity.secrets[$0]?.exposedValue ?? "-" }
            return [
                r.name.rawValue, r.provider, r.grant.rawValue, r.allowRules.joined(separator: ","), r.refreshAt.map { "\($0)" } ?? "-",
                r.state.rawValue, "\(r.generation)", time(r.createdAt), time(r.updatedAt), time(r.issuedAt), time(r.expiresAt),
                r.tokenType ?? "-", r.lastError ?? "-", "\(r.fromConfiguration)", r.sessionGroup ?? "-",
            ].joined(separator: "|") + "|" + secrets.joined(separator: "|")
        }
    }

    static func sqliteSnapshot(_ path: String, kek: KeyEncryptionKey) async throws -> [String] {
        let vault = try SQLiteVault.open(at: path, kek: kek, access: .reader)
        let identities = try await vault.loadAll()
        try vault.close()
        return snapshot(identities)
    }

    @Test func roundTripSQLiteToPostgreSQLAndBackKeepsEverything() async throws {
        let fleet = try await FleetCLIFixture.make()
        try await Self.seedSQLite(fleet)
        try fleet.writeConfig(backend: "sqlite")
        let original = try await Self.sqliteSnapshot(fleet.sqlitePath, kek: fleet.kek())
        #expect(original.count == 6)
        let listed = try await CommandRunner.tokend(["vault", "list", "--json"] + fleet.configArguments)
        #expect(listed.status == 0, "\(listed.stderr)")

        let up = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(up.status == 0, "\(up.stderr)")
        #expect(up.stdout.contains("moved 6 identities from vault \(fleet.sqlitePath) into postgresql database \(fleet.database)"))
        #expect(up.stdout.contains("vault \(fleet.sqlitePath) is unchanged"))
        #expect(up.stdout.contains("next: set [vault] backend = \"postgresql\" in \(fleet.configPath) and restart the agent(s)"))
        #expect(!(up.stdout + up.stderr).contains("rt-"), "no token in the output")
        #expect(try await Self.sqliteSnapshot(fleet.sqlitePath, kek: fleet.kek()) == original, "the source is left as it is")

        try fleet.writeConfig(backend: "postgresql")
        let pgListed = try await CommandRunner.tokend(["vault", "list", "--json"] + fleet.configArguments)
        #expect(pgListed.stdout == listed.stdout)
        let pgVerify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(pgVerify.stdout.contains("identities: 6 ok: 6 corrupt: 0"))
        let inFleet = try await fleet.withStore { try await $0.loadAll() }
        #expect(Self.snapshot(inFleet) == original)
        let retired = try await fleet.sql { connection in
            try await connection.query("SELECT name, generation FROM retired_generations", logger: FleetCLIFixture.logger)
                .decode((String, Int64).self).allElements().map { "\($0.0)=\($0.1)" }
        }
        #expect(retired == ["id-4=1"])
        // Re-sealed under the fleet store's own data key, not copied.
        let sealedAcross = try await fleet.sql { connection in
            try await connection.query("SELECT access_token FROM identities WHERE name = 'id-1'", logger: FleetCLIFixture.logger)
                .decode(Data.self).allElements()
        }
        #expect(sealedAcross.count == 1)

        let backPath = fleet.directory + "/back/vault.db"
        try fleet.writeConfig(backend: "postgresql", path: backPath)
        let down = try await CommandRunner.tokend(["vault", "migrate", "--to", "sqlite"] + fleet.configArguments)
        #expect(down.status == 0, "\(down.stderr)")
        #expect(down.stdout.contains("moved 6 identities from postgresql database \(fleet.database)"))
        #expect(down.stdout.contains("next: set [vault] backend = \"sqlite\""))
        let mode = try FileManager.default.attributesOfItem(atPath: backPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fleet.directory + "/back").filter { $0.contains("migrating") }
        #expect(leftovers.isEmpty)
        #expect(try await Self.sqliteSnapshot(backPath, kek: fleet.kek()) == original)

        try fleet.writeConfig(backend: "sqlite", path: backPath)
        let backListed = try await CommandRunner.tokend(["vault", "list", "--json"] + fleet.configArguments)
        #expect(backListed.stdout == listed.stdout)
        let backVerify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(backVerify.stdout.contains("identities: 6 ok: 6 corrupt: 0"))
        #expect(try await fleet.count("identities") == 6, "the fleet store is left as it is")
    }

    @Test func aDestinationThatHoldsIdentitiesIsRefusedAndUnchanged() async throws {
        let fleet = try await FleetCLIFixture.make()
        try await Self.seedSQLite(fleet, count: 2)
        try fleet.writeConfig(backend: "sqlite")
        #expect(try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments).status == 0)
        let again = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(again.status == 2)
        #expect(again.stderr.contains("already holds 2 identity(ies); nothing was changed"))
        #expect(try await fleet.count("identities") == 2)

        // Into SQLite: the existing file there holds identities.
        try fleet.writeConfig(backend: "postgresql")
        let down = try await CommandRunner.tokend(["vault", "migrate", "--to", "sqlite"] + fleet.configArguments)
        #expect(down.status == 2)
        #expect(down.stderr.contains("vault \(fleet.sqlitePath) already holds 2 identity(ies)"))
    }

    @Test func anEmptySQLiteDestinationIsReplaced() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        #expect(try await CommandRunner.tokend(["vault", "import"] + fleet.configArguments, stdin: FleetVaultCommandTests.importLines(0..<3)).status == 0)
        try SQLiteVault.create(at: fleet.sqlitePath, kek: fleet.kek()).close()
        let down = try await CommandRunner.tokend(["vault", "migrate", "--to", "sqlite"] + fleet.configArguments)
        #expect(down.status == 0, "\(down.stderr)")
        #expect(try await Self.sqliteSnapshot(fleet.sqlitePath, kek: fleet.kek()).count == 3)
    }

    @Test func unfinishedRefreshesAndARunningAgentAreRefused() async throws {
        let fleet = try await FleetCLIFixture.make()
        try await Self.seedSQLite(fleet, count: 3)
        try fleet.writeConfig(backend: "sqlite")
        let vault = try SQLiteVault.open(at: fleet.sqlitePath, kek: fleet.kek())
        try await vault.recordIntent(RefreshIntent(name: IdentityName("id-1")!, generation: 1, startedAt: Date()))
        // The writer lock is held here, as by a running agent.
        let locked = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(locked.status == 6)
        #expect(locked.stderr.contains("in use by another process"))
        try vault.close()

        let pending = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(pending.status == 6)
        #expect(pending.stderr.contains("1 unfinished refresh(es) (id-1); stop the agent(s) first"))
        #expect(try await fleet.count("pg_tables WHERE tablename = 'identities'") == 0, "nothing was created")

        // From the fleet store: an unfinished refresh there, and a session.
        let clean = try SQLiteVault.open(at: fleet.sqlitePath, kek: fleet.kek())
        try await clean.clearIntent(IdentityName("id-1")!)
        try clean.close()
        #expect(try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments).status == 0)
        try FileManager.default.removeItem(atPath: fleet.sqlitePath)
        try await fleet.withStore { store in
            try await store.recordIntent(RefreshIntent(name: IdentityName("id-2")!, generation: 1, startedAt: Date()))
        }
        let fromFleet = try await CommandRunner.tokend(["vault", "migrate", "--to", "sqlite"] + fleet.configArguments)
        #expect(fromFleet.status == 6)
        #expect(fromFleet.stderr.contains("unfinished refresh(es) (id-2)"))
        #expect(!FileManager.default.fileExists(atPath: fleet.sqlitePath))
    }

    /// The second identity cannot be written (a trigger in the database
    /// refuses it): the transaction takes the first one back with it.
    @Test func aFailureHalfwayIntoPostgreSQLLeavesTheStoreEmpty() async throws {
        let fleet = try await FleetCLIFixture.make()
        try await Self.seedSQLite(fleet, count: 3)
        try fleet.writeConfig(backend: "postgresql")
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        try await fleet.sql { connection in
            try await connection.query(
                """
                CREATE FUNCTION refuse_id1() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.name = 'id-1' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$
                """, logger: FleetCLIFixture.logger)
            try await connection.query(
                "CREATE TRIGGER refuse_id1 BEFORE INSERT ON identities FOR EACH ROW EXECUTE FUNCTION refuse_id1()",
                logger: FleetCLIFixture.logger)
        }
        let failed = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(failed.status == 7)
        #expect(failed.stderr.contains("refused by the test"))
        #expect(try await fleet.count("identities") == 0)
        #expect(try await fleet.count("retired_generations") == 0)

        try await fleet.sql { connection in
            try await connection.query("DROP TRIGGER refuse_id1 ON identities", logger: FleetCLIFixture.logger)
        }
        let retried = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(retried.status == 0, "\(retried.stderr)")
        #expect(try await fleet.count("identities") == 3)
    }

    /// A migrate that cannot finish writing the SQLite file leaves no vault
    /// at the target: one whose write fails halfway (its file size limit
    /// makes SQLite's write short: EFBIG) removes its partial file; one
    /// killed (SIGKILL as soon as its partial file appears) leaves that
    /// file, and the next run clears it and completes.
    @Test func aMigrateFailingOrKilledWhileWritingSQLiteLeavesNoVault() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        try await fleet.withStore { store in
            try await store.enroll(batch: (0..<1000).map { FleetCLIFixture.enrollment($0, tokenSize: 1500) })
        }
        let arguments = ["vault", "migrate", "--to", "sqlite"] + fleet.configArguments
        let failed = try await CommandRunner.run(
            "/bin/sh", ["-c", "ulimit -f 400; exec \(CommandRunner.tokendPath) \(arguments.joined(separator: " "))"])
        #expect(failed.status == 7, "\(failed.stderr)")
        #expect(failed.stderr.contains("vault.db.migrating"))
        #expect(!FileManager.default.fileExists(atPath: fleet.sqlitePath))
        let afterFailure = try FileManager.default.contentsOfDirectory(atPath: fleet.directory + "/state").filter { $0.contains("migrating") }
        #expect(afterFailure.isEmpty, "a failed write removes its partial file")

        let partial = fleet.sqlitePath + ".migrating"
        let child = try ChildProcess(
            CommandRunner.tokendPath, arguments, stdout: .file(fleet.directory + "/killed.out"), stderr: .file(fleet.directory + "/killed.err"))
        var status: Int32? = nil
        while status == nil, !FileManager.default.fileExists(atPath: partial) {
            status = Spawn.reap(child.pid)
            try await Task.sleep(for: .milliseconds(1))
        }
        child.signal(SIGKILL)
        while status == nil { status = await child.wait(timeout: .seconds(60)) }
        #expect(status == 128 + SIGKILL, "killed while writing \(partial), not after")
        #expect(!FileManager.default.fileExists(atPath: fleet.sqlitePath))

        let done = try await CommandRunner.tokend(arguments)
        #expect(done.status == 0, "\(done.stderr)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fleet.directory + "/state").filter { $0.contains("migrating") }
        #expect(leftovers.isEmpty)
        try fleet.writeConfig(backend: "sqlite")
        let verify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(verify.stdout.contains("identities: 1000 ok: 1000 corrupt: 0"))
    }

    /// A value that does not open would arrive as garbage: refused, naming
    /// the identity and never a value.
    @Test func aSourceWithACorruptValueIsRefused() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        #expect(try await CommandRunner.tokend(
            ["vault", "import"] + fleet.configArguments, stdin: FleetVaultCommandTests.importLines(0..<3)).status == 0)
        try await fleet.sql { connection in
            try await connection.query(
                "UPDATE identities SET refresh_token = overlay(refresh_token placing '\\x00'::bytea from 20) WHERE name = 'id-1'",
                logger: FleetCLIFixture.logger)
        }
        let refused = try await CommandRunner.tokend(["vault", "migrate", "--to", "sqlite"] + fleet.configArguments)
        #expect(refused.status == 7)
        #expect(refused.stderr.contains("1 identity(ies) whose sealed values do not open (id-1)"))
        #expect(!refused.stderr.contains("rt-secret"))
        #expect(!FileManager.default.fileExists(atPath: fleet.sqlitePath))
    }

    @Test func withoutAFleetTableThereIsNothingToMoveTo() async throws {
        let fleet = try await FleetCLIFixture.make()
        try Data("[vault]\npath = \"\(fleet.sqlitePath)\"\nkey_file = \"\(fleet.keyPath)\"\n".utf8)
            .write(to: URL(fileURLWithPath: fleet.configPath))
        let result = try await CommandRunner.tokend(["vault", "migrate", "--to", "postgresql"] + fleet.configArguments)
        #expect(result.status == 2)
        #expect(result.stderr.contains("has no [vault.postgresql] table"))
        let bad = try await CommandRunner.tokend(["vault", "migrate", "--to", "mysql"] + fleet.configArguments)
        #expect(bad.status == 64)
    }
}
