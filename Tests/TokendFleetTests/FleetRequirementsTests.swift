import Foundation
import Testing

/// The fleet suites skip, with their reason, when no test cluster runs.
/// scripts/test.sh (and so CI) sets `TOKEND_TEST_REQUIRE_ALL=1`: then a
/// missing cluster fails the run here instead of silently skipping them.
@Suite("What the fleet store's tests need")
struct FleetRequirementsTests {
    static var required: Bool { ProcessInfo.processInfo.environment["TOKEND_TEST_REQUIRE_ALL"] == "1" }

    @Test(.enabled(if: required, "only scripts/test.sh requires everything"))
    func theTestPostgreSQLClusterIsRunning() {
        let env = ProcessInfo.processInfo.environment
        #expect(
            FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/15/bin/initdb"),
            "PostgreSQL 15 is not installed (scripts/setup.sh installs postgresql-15)")
        for variable in [
            "TOKEND_TEST_POSTGRES_URL", "TOKEND_TEST_POSTGRES_HOST", "TOKEND_TEST_POSTGRES_PORT", "TOKEND_TEST_POSTGRES_SOCKET",
            "TOKEND_TEST_POSTGRES_USER", "TOKEND_TEST_POSTGRES_DATABASE", "TOKEND_TEST_POSTGRES_PASSWORD_FILE",
            "TOKEND_TEST_POSTGRES_CA_FILE", "TOKEND_TEST_POSTGRES_OTHER_CA_FILE",
        ] {
            #expect(env[variable] != nil, "\(variable) is not set: start the cluster with eval \"$(scripts/postgres/start.sh)\"")
        }
    }
}
