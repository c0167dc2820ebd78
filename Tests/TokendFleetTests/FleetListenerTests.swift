import Foundation
import PostgresNIO
import Testing
import TokendCore
import TokendFleet

@Suite(
    "Fleet notifications: every commit announces <name> <generation>, listeners survive drops and junk",
    .enabled(if: FleetFixture.available, "needs the test cluster: eval \"$(scripts/postgres/start.sh)\""))
struct FleetListenerTests {
    @Test func aCommitIsHeardByAListenerOnAnotherConnectionAsNameAndGeneration() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let collector = EventCollector(FleetListener(settings: fixture.settings()))
        defer { Task { await collector.stop() } }
        #expect(await collector.waitFor { $0 == .listening }.count == 1)

        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        let lease = try #require(try await vault.acquireLease(name: FleetFixture.name("alice"), holder: "host-a", ttl: .seconds(60)))
        try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "secret-token-value"), lease: lease)
        let changes = await collector.waitFor(2) { if case .changed = $0 { true } else { false } }
        #expect(changes == [
            .changed(FleetNotification(name: FleetFixture.name("alice"), generation: 1)),
            .changed(FleetNotification(name: FleetFixture.name("alice"), generation: 2)),
        ])
        // A commit that fails announces nothing: the next change heard is generation 3.
        await #expect(throws: VaultError.self) {
            try await vault.commit(FleetFixture.refresh("alice", from: 1, token: "late"))
        }
        try await vault.commit(FleetFixture.refresh("alice", from: 2, token: "three"))
        let after = await collector.waitFor(3) { if case .changed = $0 { true } else { false } }
        #expect(after.last == .changed(FleetNotification(name: FleetFixture.name("alice"), generation: 3)))
        #expect(after.count == 3)
    }

    @Test func malformedPayloadsSentByHandAreIgnoredAndTheListenerKeepsGoing() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let collector = EventCollector(FleetListener(settings: fixture.settings()))
        defer { Task { await collector.stop() } }
        _ = await collector.waitFor { $0 == .listening }
        let junk = [
            "", " ", "alice", "alice ", " 1", "alice 1 2", "alice  1", "alice\t1", "alice 1\n", "alice -1", "alice 0",
            // (No NUL: PostgreSQL text cannot carry one, so pg_notify refuses it.)
            "alice +1", "alice 1.0", "alice 0x10", "alice 99999999999999999999", "-alice 1", "al ice 1",
            "alice\u{7} 1", "ålice 1", String(repeating: "a", count: 129) + " 1",
            String(repeating: "x", count: 7900),
        ]
        try await fixture.sql { connection in
            for payload in junk {
                try await connection.query("SELECT pg_notify('tokend_identity', \(payload))", logger: FleetFixture.logger)
            }
        }
        try await vault.enroll(FleetFixture.fullEnrollment("alice"))
        let changes = await collector.waitFor { if case .changed = $0 { true } else { false } }
        // Notifications arrive in commit order: the junk came first and yielded nothing.
        #expect(changes == [.changed(FleetNotification(name: FleetFixture.name("alice"), generation: 1))])
    }

    @Test func aListenerWhoseConnectionIsKilledReconnectsAndHearsLaterCommits() async throws {
        let fixture = try await FleetFixture.withOwnDatabase()
        let vault = try await fixture.create()
        defer { Task { await vault.close() } }
        let collector = EventCollector(FleetListener(settings: fixture.settings(), initialBackoff: .milliseconds(50)))
        defer { Task { await collector.stop() } }
        _ = await collector.waitFor { $0 == .listening }
        let killed = try await fixture.sql { connection in
            try await connection.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name = \(fixture.applicationName) AND query ILIKE 'LISTEN%'
                """, logger: FleetFixture.logger
            ).decode(Bool.self).allElements()
        }
        #expect(killed == [true])
        #expect(await collector.waitFor(2) { $0 == .listening }.count == 2)
        try await vault.enroll(FleetFixture.fullEnrollment("bob"))
        #expect(await collector.waitFor { if case .changed = $0 { true } else { false } }
            == [.changed(FleetNotification(name: FleetFixture.name("bob"), generation: 1))])
    }
}
