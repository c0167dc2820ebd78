import TokendProviders
import TokendTestKit

/// One HTTP client for all provider tests. A static is never deinitialized,
/// so it needs no shutdown (AsyncHTTPClient traps if a client is dropped
/// without one, and Swift Testing has no async teardown). Its logs go to
/// `logs`, which the tests search for secrets.
enum SharedHTTP {
    static let logs = RecordingLogHandler.Store()
    static let client = ProviderHTTP(logger: logs.logger(label: "tokend.http"))
}
