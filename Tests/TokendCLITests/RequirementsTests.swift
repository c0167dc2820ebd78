import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Suites that need root or django-oauth-toolkit are skipped, with their
/// reason, in a plain `swift test`. `scripts/test.sh` (and so CI) sets
/// `TOKEND_TEST_REQUIRE_ALL=1`: then a missing requirement fails the run
/// here instead of silently skipping those suites.
@Suite("What the whole suite needs")
struct RequirementsTests {
    static var required: Bool { ProcessInfo.processInfo.environment["TOKEND_TEST_REQUIRE_ALL"] == "1" }

    @Test(.enabled(if: required, "only scripts/test.sh requires everything"))
    func everyRequirementOfTheWholeSuiteIsPresent() {
        #expect(getuid() == 0, "the access-control and reload suites create users: run as root")
        #expect(
            ProcessInfo.processInfo.environment["TOKEND_TEST_OAUTH2_URL"] != nil,
            "django-oauth-toolkit is not running (scripts/oauth2-server/start.sh)")
        for tool in ["/usr/bin/socat", "/usr/bin/setpriv", "/usr/sbin/useradd", "/usr/bin/python3"] {
            #expect(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing (scripts/setup.sh)")
        }
    }
}
