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

    /// A running agent with `busy_poll_us` set, holding identity `b` with a
    /// token valid for an hour (no provider is ever called).
    private func startAgent(busyPollMicroseconds: Int) async throws -> (AgentSandbox, ChildProcess) {
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
        return (sandbox, try await sandbox.startAgent())
    }

    /// 2,000 requests one after another, spread in turn over `connections`
    /// connections, each sent `gap` seconds after the last reply (a busy
    /// wait: a sleep that short is not kept), then the connections left
    /// open and idle. Counted from /proc for the agent's `tokend-socket`
    /// thread: how often it went to sleep during the requests, and its CPU
    /// ticks (10 ms) over the 2 s of idle after them.
    private func measure(
        busyPollMicroseconds: Int, connections: Int = 1, gap: Double = 0.0001
    ) async throws -> (sleeps: Int, idleTicks: Int) {
        let (sandbox, agent) = try await startAgent(busyPollMicroseconds: busyPollMicroseconds)
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
                clients = []
                for _ in range(\(connections)):
                    s = socket.socket(socket.AF_UNIX); s.connect("\(sandbox.socket)")
                    clients.append((s, s.makefile("rb")))
                time.sleep(0.2)
                before = sleeps()
                for i in range(\(Self.requests)):
                    s, reader = clients[i % len(clients)]
                    start = time.perf_counter()
                    while time.perf_counter() - start < \(gap): pass
                    s.sendall(b"GET b\\n")
                    line = reader.readline()
                    assert line.startswith(b"OK at-b "), line
                slept = sleeps() - before
                time.sleep(0.2)
                start = ticks(); time.sleep(2); spent = ticks() - start
                print(slept, spent)
                for s, _ in clients: s.close()
                """])
        #expect(await sandbox.stop(agent) == 0)
        let figures = script.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard script.status == 0, figures.count == 2 else {
            throw SandboxFailure("the client failed: \(script.stdout) \(script.stderr)")
        }
        return (figures[0], figures[1])
    }

    /// Polling for 200 µs after each reply, to a client that sends its
    /// next request 0.1 ms after each reply: the thread sleeps for few of
    /// the requests, and not at all once its client goes quiet.
    @Test func aPollingThreadSleepsRarelyAndStopsPollingWhenItsClientIsIdle() async throws {
        let figures = try await measure(busyPollMicroseconds: 200)
        // Without polling it sleeps about once per request (the tests below).
        #expect(figures.sleeps < Self.requests / 2, "slept \(figures.sleeps) times in \(Self.requests) requests")
        // A poll that never ended would be about 200.
        #expect(figures.idleTicks <= 5, "\(figures.idleTicks) ticks of 10 ms in 2 s with an idle client")
    }

    /// A client 20 µs behind each reply: with the default 50 µs the thread
    /// stays awake for it, with `busy_poll_us = 0` it sleeps after every
    /// reply.
    @Test func zeroTurnsPollingOff() async throws {
        let polled = try await measure(busyPollMicroseconds: 50, gap: 0.00002)
        #expect(polled.sleeps < Self.requests / 2, "50 µs: slept \(polled.sleeps) times in \(Self.requests) requests")
        let off = try await measure(busyPollMicroseconds: 0, gap: 0.00002)
        #expect(off.sleeps >= Self.requests * 4 / 5, "0: slept \(off.sleeps) times in \(Self.requests) requests")
        #expect(off.idleTicks <= 5, "\(off.idleTicks) ticks of 10 ms in 2 s with an idle client")
    }

    /// Two connections taking turns: the thread does not poll (it would
    /// take the core that clients on many connections need).
    @Test func twoConnectionsAreNotPolledFor() async throws {
        let figures = try await measure(busyPollMicroseconds: 200, connections: 2)
        #expect(figures.sleeps >= Self.requests * 4 / 5, "slept \(figures.sleeps) times in \(Self.requests) requests")
    }

    /// SIGTERM while a client sends request after request (the thread
    /// polling between them): the agent stops, cleanly.
    @Test func theAgentStopsWhilePolling() async throws {
        let (sandbox, agent) = try await startAgent(busyPollMicroseconds: 200)
        // Until the agent closes the connection (or 60 s): how many
        // replies came, and how the stream ended.
        async let client = CommandRunner.run(
            "/usr/bin/python3",
            ["-c", """
                import socket, time
                s = socket.socket(socket.AF_UNIX); s.connect("\(sandbox.socket)")
                reader = s.makefile("rb")
                answered, end, deadline = 0, "timeout", time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        s.sendall(b"GET b\\n")
                        line = reader.readline()
                    except OSError:
                        end = "reset"; break
                    if not line.startswith(b"OK at-b "):
                        end = "closed" if line == b"" else line.decode(errors="replace").strip(); break
                    answered += 1
                print(answered, end)
                """])
        try await Task.sleep(for: .seconds(1))
        #expect(await sandbox.stop(agent) == 0, "\(agent.output)")
        let result = try await client
        let fields = result.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(fields.count == 2 && (Int(fields[0]) ?? 0) > 0, "\(result.stdout) \(result.stderr)")
        #expect(fields.count == 2 && fields[1] != "timeout", "\(result.stdout)")
    }
}
