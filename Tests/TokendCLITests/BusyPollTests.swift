import Foundation
import Testing
import TokendTestKit

/// `[socket] busy_poll_us`: after answering its one connection, the
/// socket's thread polls for the next request instead of sleeping, for at
/// most that long, and then sleeps: an agent left with an idle client
/// spends nothing.
@Suite("The socket thread's busy poll")
struct BusyPollTests {
    static let requests = 2000

    /// 2,000 requests one after another over one connection, each sent
    /// 0.2 ms after the last reply (so even a slow build of the agent is
    /// waiting for it, polling or asleep), then that connection left open
    /// and idle. Counted from /proc for the agent's `tokend-socket` thread:
    /// how often it went to sleep during the requests, and its CPU ticks
    /// (10 ms) over the 2 s of idle after them.
    private func measure(busyPollMicroseconds: Int) async throws -> (sleeps: Int, idleTicks: Int) {
        let sandbox = try AgentSandbox("busypoll")
        sandbox.writeConfig(socketExtra: "busy_poll_us = \(busyPollMicroseconds)", """
            [providers.demo]
            kind = "oauth2"
            token_endpoint = "http://127.0.0.1:9/token"
            allow_insecure_http = true
            client_id = "c"
            client_secret_file = "\(sandbox.secretFile)"
            """)
        try await sandbox.initVault()
        let imported = try await sandbox.importLines([
            #"{"name": "b", "provider": "demo", "refresh_token": "rt", "access_token": "at-b", "expires_in": 3600}"#
        ])
        #expect(imported.status == 0, "\(imported.stderr)")
        let agent = try await sandbox.startAgent()
        let script = try await CommandRunner.run(
            "/usr/bin/python3",
            ["-c", """
                import glob, socket, time
                tasks = [t for t in glob.glob("/proc/\(agent.pid)/task/*") if open(t + "/comm").read() == "tokend-socket\\n"]
                assert len(tasks) == 1, tasks
                task = tasks[0]
                def sleeps():
                    for line in open(task + "/status"):
                        if line.startswith("voluntary_ctxt_switches:"): return int(line.split()[1])
                def ticks():
                    fields = open(task + "/stat").read().rsplit(")", 1)[1].split()
                    return int(fields[11]) + int(fields[12])
                s = socket.socket(socket.AF_UNIX); s.connect("\(sandbox.socket)")
                reader = s.makefile("rb")
                before = sleeps()
                for _ in range(\(Self.requests)):
                    time.sleep(0.0002)
                    s.sendall(b"GET b\\n")
                    line = reader.readline()
                    assert line.startswith(b"OK at-b "), line
                slept = sleeps() - before
                time.sleep(0.2)
                start = ticks(); time.sleep(2); spent = ticks() - start
                print(slept, spent)
                s.close()
                """])
        #expect(await sandbox.stop(agent) == 0)
        let figures = script.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard script.status == 0, figures.count == 2 else {
            throw SandboxFailure("the client failed: \(script.stdout) \(script.stderr)")
        }
        return (figures[0], figures[1])
    }

    /// Polling for a millisecond after each reply: the thread sleeps for
    /// few of the requests, and not at all once its client goes quiet.
    @Test func aPollingThreadSleepsRarelyAndStopsPollingWhenItsClientIsIdle() async throws {
        let figures = try await measure(busyPollMicroseconds: 1000)
        // Without polling it sleeps once per request (the test below).
        #expect(figures.sleeps < Self.requests / 2, "slept \(figures.sleeps) times in \(Self.requests) requests")
        // A poll that never ended would be about 200.
        #expect(figures.idleTicks <= 5, "\(figures.idleTicks) ticks of 10 ms in 2 s with an idle client")
    }

    /// `busy_poll_us = 0`: the thread sleeps after every reply.
    @Test func zeroTurnsPollingOff() async throws {
        let figures = try await measure(busyPollMicroseconds: 0)
        #expect(figures.sleeps >= Self.requests * 4 / 5, "slept \(figures.sleeps) times in \(Self.requests) requests")
        #expect(figures.idleTicks <= 5, "\(figures.idleTicks) ticks of 10 ms in 2 s with an idle client")
    }
}
