import Foundation
import Testing
@testable import TokendAgent
import TokendSystemd

@Suite("Log lines: one event per line, escaped, logfmt or JSON")
struct LogFormatTests {
    @Test func logfmtQuotesOnlyWhatNeedsIt() {
        let line = LineLogHandler.logfmt([
            ("level", "info"), ("msg", "identity enrolled"), ("tokend.identity", "a=b"), ("tokend.error", "line1\nline2\"x\""),
        ])
        #expect(line == #"level=info msg="identity enrolled" tokend.identity="a=b" tokend.error="line1\nline2\"x\"""#)
    }

    @Test func aHostileValueCannotForgeASecondLine() {
        let line = LineLogHandler.logfmt([("msg", "ok\nlevel=error msg=forged")])
        #expect(!line.contains("\n"))
    }

    @Test func jsonIsOneValidObject() throws {
        let line = LineLogHandler.json([("level", "warning"), ("msg", "tab\there \u{1}")])
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
        #expect(object == ["level": "warning", "msg": "tab\there \u{1}"])
    }

    @Test func notifySocketPathsIncludingAbstractOnes() {
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify"]).isActive)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "@abstract-name"]).isActive)
        #expect(!SystemdNotifier(environment: [:]).isActive)
        let watchdog = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"])
        #expect(watchdog.watchdogInterval == .seconds(15), "pings at half the watchdog timeout")
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"]).watchdogInterval == nil,
                "a watchdog meant for another process is ignored")
    }

    @Test func hardeningDisablesCoreDumpsAndDumpability() {
        #expect(ProcessHardening.apply())
        #expect(!ProcessHardening.isDumpable)
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_CORE.rawValue), &limit)
        #expect(limit.rlim_cur == 0 && limit.rlim_max == 0)
    }
}
