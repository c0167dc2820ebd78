import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet
import TokendVault

/// Every `tokend vault` command on the fleet store (`backend =
/// "postgresql"`): the real binary against the real test cluster.
@Suite("tokend vault commands on the fleet store", .enabled(if: FleetCLIFixture.available, FleetCLIFixture.skipReason))
struct FleetVaultCommandTests {
    static func importLines(_ range: Range<Int>) -> Data {
        Data(range.map { index in
            #"{"name": "id-\#(index)", "provider": "corp", "refresh_token": "rt-secret-\#(index)", "access_token": "at-secret-\#(index)", "expires_in": 3600, "allow": ["uid:\#(1000 + index)"], "refresh_at": 0.5}"#
        }.joined(separator: "\n").utf8)
    }

    @Test func initCreatesTheStoreOnceAndKeepsTheKeyFile() async throws {
        let fleet = try await FleetCLIFixture.make()
        let created = try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments)
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout.contains("created the fleet vault in postgresql database \(fleet.database)"))
        let key = try #require(FileManager.default.contents(atPath: fleet.keyPath))
        #expect(key.count == 32)

        let again = try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments)
        #expect(again.status == 2)
        #expect(again.stderr.contains("already holds a tokend vault"))
        #expect(FileManager.default.contents(atPath: fleet.keyPath) == key)
        #expect(try await fleet.count("vault_meta") == 1)
        #expect(!FileManager.default.fileExists(atPath: fleet.sqlitePath), "no SQLite file with the postgresql backend")
    }

    @Test func importListSessionsInfoAndVerifyWorkOnTheStore() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        let imported = try await CommandRunner.tokend(["vault", "import"] + fleet.configArguments, stdin: Self.importLines(0..<5))
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported 5 identities into postgresql database \(fleet.database)"))

        let list = try await CommandRunner.tokend(["vault", "list", "--json"] + fleet.configArguments)
        #expect(list.status == 0)
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 5)
        #expect(lines.first?.contains(#""name":"id-0""#) == true)
        #expect(lines.allSatisfy { $0.contains(#""state":"fresh""#) && $0.contains(#""generation":1"#) })
        #expect(!list.stdout.contains("secret"), "no token in the listing")

        let info = try await CommandRunner.tokend(["vault", "info"] + fleet.configArguments)
        #expect(info.status == 0, "\(info.stderr)")
        #expect(info.stdout.contains("vault: postgresql database \(fleet.database)"))
        #expect(info.stdout.contains("identities: 5"))
        #expect(info.stdout.contains("  fresh: 5"))
        #expect(info.stdout.contains("key terms: 1 (active 1)"))
        #expect(info.stdout.contains("unfinished refreshes: 0"))
        #expect(info.stdout.contains("leases held: 0"))
        #expect(info.stdout.contains("schema: v2-leases"))

        let verify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(verify.status == 0)
        #expect(verify.stdout.contains("identities: 5 ok: 5 corrupt: 0"))

        let sessions = try await CommandRunner.tokend(["vault", "sessions"] + fleet.configArguments)
        #expect(sessions.status == 0, "\(sessions.stderr)")
        #expect(sessions.stdout == "SESSION\tSTATE\tIDENTITIES\n")
    }

    @Test func verifyNamesTheCorruptIdentityWithoutSecretsAndChangesNothing() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        #expect(try await CommandRunner.tokend(["vault", "import"] + fleet.configArguments, stdin: Self.importLines(0..<4)).status == 0)
        // The operator (or an attacker) swaps two identities' ciphertexts:
        // each is bound to its identity, so both fail to open.
        try await fleet.sql { connection in
            try await connection.query(
                """
                UPDATE identities SET access_token = (SELECT access_token FROM identities WHERE name = 'id-1')
                WHERE name = 'id-2'
                """, logger: FleetCLIFixture.logger)
        }
        let verify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(verify.status == 1)
        #expect(verify.stdout.contains("corrupt id-2:"))
        #expect(!verify.stdout.contains("corrupt id-1"))
        #expect(verify.stdout.contains("identities: 4 ok: 3 corrupt: 1"))
        #expect(!(verify.stdout + verify.stderr).contains("at-secret"), "no token in the report")
        let states = try await fleet.sql { connection in
            try await connection.query("SELECT count(*) FROM identities WHERE state = 'corrupt'", logger: FleetCLIFixture.logger)
                .decode(Int64.self).allElements()
        }
        #expect(states == [0], "verify is read-only: it records nothing")
    }

    @Test func rotateKEKRewrapsInOneGoAndOnlyTheNewKeyOpens() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        #expect(try await CommandRunner.tokend(["vault", "import"] + fleet.configArguments, stdin: Self.importLines(0..<3)).status == 0)
        let newKey = fleet.directory + "/new.key"
        let rotated = try await CommandRunner.tokend(["vault", "rotate-kek", "--new-key-file", newKey] + fleet.configArguments)
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(rotated.stdout.contains("now opens only with \(newKey)"))
        #expect(rotated.stdout.contains("give every host of the fleet the new key"))

        let old = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(old.status == 3)
        #expect(old.stderr.contains("vault key does not match"))
        let verify = try await CommandRunner.tokend(["vault", "verify", "--key-file", newKey] + fleet.configArguments)
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stdout.contains("identities: 3 ok: 3 corrupt: 0"))
    }

    @Test func rotateDEKResealsEveryValueAndRefusesBesideAnotherSession() async throws {
        let fleet = try await FleetCLIFixture.make()
        #expect(try await CommandRunner.tokend(["vault", "init"] + fleet.configArguments).status == 0)
        #expect(try await CommandRunner.tokend(["vault", "import"] + fleet.configArguments, stdin: Self.importLines(0..<7)).status == 0)

        // A session of the same user on the database stands for an agent.
        let env = FleetCLIFixture.environment
        let password = try String(contentsOfFile: env["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!, encoding: .utf8)
        let agent = try await PostgresConnection.connect(
            configuration: .init(
                unixSocketPath: env["TOKEND_TEST_POSTGRES_SOCKET"]!, username: env["TOKEND_TEST_POSTGRES_USER"]!,
                password: password.trimmingCharacters(in: .whitespacesAndNewlines), database: fleet.database),
            id: 1, logger: FleetCLIFixture.logger)
        let refused = try await CommandRunner.tokend(["vault", "rotate-dek"] + fleet.configArguments)
        try await agent.close()
        #expect(refused.status == 6)
        #expect(refused.stderr.contains("stop the agents on every host before rotate-dek"))
        #expect(try await fleet.count("data_keys") == 1, "nothing was changed")

        let rotated = try await CommandRunner.tokend(["vault", "rotate-dek"] + fleet.configArguments)
        #expect(rotated.status == 0, "\(rotated.stderr)")
        // 7 identities with a refresh and an access token each.
        #expect(rotated.stdout.contains("data key term 2 active; re-sealed 14 values; retired terms: 1"))
        let terms = try await fleet.sql { connection in
            try await connection.query(
                """
                SELECT DISTINCT get_byte(v, 1) << 24 | get_byte(v, 2) << 16 | get_byte(v, 3) << 8 | get_byte(v, 4)
                FROM (SELECT refresh_token AS v FROM identities UNION ALL SELECT access_token FROM identities) AS sealed
                WHERE v IS NOT NULL
                """, logger: FleetCLIFixture.logger
            ).decode(Int32.self).allElements()
        }
        #expect(terms == [2], "every value is sealed under the new term")
        let info = try await CommandRunner.tokend(["vault", "info"] + fleet.configArguments)
        #expect(info.stdout.contains("key terms: 2 (active 2)"))
        let verify = try await CommandRunner.tokend(["vault", "verify"] + fleet.configArguments)
        #expect(verify.stdout.contains("identities: 7 ok: 7 corrupt: 0"))
    }

    /// Hosts starting together with `serve --create-vault` create one store;
    /// one that finds it there goes on. The agents then stop at their
    /// socket (its directory is a file), so each run ends on its own.
    @Test func serveCreateVaultCreatesOneStoreForRacingHosts() async throws {
        let fleet = try await FleetCLIFixture.make()
        _ = try fleet.kek()
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: fleet.directory + "/blocker"))
        try fleet.writeConfig(backend: "postgresql", extra: "[socket]\npath = \"\(fleet.directory)/blocker/tokend.sock\"")
        async let first = CommandRunner.tokend(["serve", "--create-vault"] + fleet.configArguments)
        async let second = CommandRunner.tokend(["serve", "--create-vault"] + fleet.configArguments)
        let runs = try await [first, second]
        for run in runs { #expect(!run.stderr.contains("already holds"), "\(run.stderr)") }
        #expect(try await fleet.count("vault_meta") == 1)
        #expect(try await fleet.count("data_keys") == 1)
        let third = try await CommandRunner.tokend(["serve", "--create-vault"] + fleet.configArguments)
        #expect(!third.stderr.contains("already holds"), "\(third.stderr)")
        let info = try await CommandRunner.tokend(["vault", "info"] + fleet.configArguments)
        #expect(info.status == 0, "the store opens with the hosts' key: \(info.stderr)")
    }

    @Test func checkConfigValidatesTheStoresFiles() async throws {
        let fleet = try await FleetCLIFixture.make()
        let ok = try await CommandRunner.tokend(["check-config"] + fleet.configArguments)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("vault: postgresql database \(fleet.database) at "))
        #expect(ok.stdout.contains("lease 15.0 s"))

        let loose = fleet.directory + "/loose.password"
        FileManager.default.createFile(atPath: loose, contents: Data("pw\n".utf8), attributes: [.posixPermissions: 0o644])
        let table = fleet.fleetTable.replacingOccurrences(
            of: FleetCLIFixture.environment["TOKEND_TEST_POSTGRES_PASSWORD_FILE"]!, with: loose)
        try Data("[vault]\nbackend = \"postgresql\"\n\(table)\n".utf8).write(to: URL(fileURLWithPath: fleet.configPath))
        let insecure = try await CommandRunner.tokend(["check-config"] + fleet.configArguments)
        #expect(insecure.status == 2)
        #expect(insecure.stderr.contains("vault.postgresql.password_file: database password file \(loose) is accessible by group or others"))

        let credential = table.replacingOccurrences(of: "password_file = \"\(loose)\"", with: "password_credential = \"db\"")
        try Data("[vault]\nbackend = \"postgresql\"\n\(credential)\n".utf8).write(to: URL(fileURLWithPath: fleet.configPath))
        // Outside the unit the credential cannot be there: left for the agent's start.
        let outside = try await CommandRunner.tokend(["check-config"] + fleet.configArguments)
        #expect(outside.status == 0, "\(outside.stderr)")
        #expect(outside.stdout.contains("password_credential: db is checked when the agent starts"))
        // Inside one (CREDENTIALS_DIRECTORY set) a missing credential is an error.
        let credentials = fleet.directory + "/credentials"
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        let missing = try await CommandRunner.run(
            "/usr/bin/env", ["CREDENTIALS_DIRECTORY=\(credentials)", CommandRunner.tokendPath, "check-config"] + fleet.configArguments)
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("vault.postgresql.password_credential:"), "\(missing.stderr)")

        try Data("[vault]\nbackend = \"postgresql\"\n\(fleet.fleetTable)\npassword = \"hunter2\"\n".utf8)
            .write(to: URL(fileURLWithPath: fleet.configPath))
        let inline = try await CommandRunner.tokend(["check-config"] + fleet.configArguments)
        #expect(inline.status == 2)
        #expect(inline.stderr.contains("vault.postgresql.password: secrets do not belong in the config file"))
        #expect(!inline.stderr.contains("hunter2"))
    }

    @Test func anUnreachableDatabaseIsAStorageErrorNamingIt() async throws {
        let fleet = try await FleetCLIFixture.make()
        try Data("[vault]\nbackend = \"postgresql\"\nkey_file = \"\(fleet.keyPath)\"\n[vault.postgresql]\nsocket = \"\(fleet.directory)/.s.PGSQL.1\"\ndatabase = \"d\"\nuser = \"u\"\n".utf8)
            .write(to: URL(fileURLWithPath: fleet.configPath))
        _ = try fleet.kek()
        let list = try await CommandRunner.tokend(["vault", "list"] + fleet.configArguments)
        #expect(list.status == 7)
        #expect(list.stderr.contains("postgresql database d at \(fleet.directory)/.s.PGSQL.1"))
    }
}
