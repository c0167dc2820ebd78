import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `tokend exec` with real child processes (scripts/tools-test/child.py)
/// and a real agent whose token the test rotates itself.
@Suite("tokend exec: restart or signal on rotation, signals forwarded, exit status", .serialized)
struct ExecCommandTests {
    static let child = ToolsAgent.scripts + "/child.py"

    /// Starts `tokend exec` with `options`, running child.py with `childArguments`.
    static func exec(_ agent: ToolsAgent, _ options: [String], child childArguments: [String]) throws -> ChildProcess {
        try ChildProcess(
            CommandRunner.tokendPath,
            ["exec", "--socket", agent.socketPath, "--identity", ToolsAgent.identity, "--debounce", "0.2"] + options
                + ["--", "python3", child] + childArguments,
            output: agent.directory + "/exec.out")
    }

    static func waitFor(_ log: String, _ line: String) async -> Bool {
        await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).contains(line) }
    }

    static func pid(of start: String) -> Int32? {
        let fields = start.split(separator: " ")
        return fields.count >= 2 ? Int32(fields[1]) : nil
    }

    @Test func environmentModeRestartsOncePerNewToken() async throws {
        let agent = try await ToolsAgent()
        let log = agent.directory + "/child.log"
        let exec = try Self.exec(agent, ["--env", "API_TOKEN"], child: [log, "env:API_TOKEN", "exit=0"])
        let initial = try await agent.token()
        var tokens = [initial]
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).first?.hasSuffix(" \(initial)") == true }, "\(exec.output)")
        let firstChild = ToolsAgent.lines(log).first.flatMap(Self.pid)
        // The token is in the child's environment only: not in tokend's, not in either's argv.
        let childEnvironment = firstChild.flatMap { try? String(contentsOfFile: "/proc/\($0)/environ", encoding: .utf8) } ?? ""
        #expect(childEnvironment.contains("API_TOKEN=\(tokens[0])"))
        let ownEnvironment = (try? String(contentsOfFile: "/proc/\(exec.pid)/environ", encoding: .utf8)) ?? ""
        #expect(!ownEnvironment.isEmpty && !ownEnvironment.contains(tokens[0]))
        for pid in [exec.pid] + (firstChild.map { [$0] } ?? []) {
            let argv = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            #expect(!argv.contains(tokens[0]))
        }

        for _ in 0..<3 {
            let next = try await agent.rotate()
            tokens.append(next)
            #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).last?.hasSuffix(" \(next)") == true }, "\(exec.output)")
        }
        let events = ToolsAgent.lines(log).map { $0.hasPrefix("start ") ? "start \($0.split(separator: " ")[2])" : $0 }
        #expect(events == [
            "start \(tokens[0])", "term", "start \(tokens[1])", "term", "start \(tokens[2])", "term", "start \(tokens[3])",
        ])
        exec.signal(SIGTERM)
        #expect(await exec.wait(timeout: .seconds(30)) == 0, "\(exec.output)")
        #expect(!exec.output.contains(tokens[0]))
        await agent.stop()
    }

    @Test func fileModeSignalsOncePerNewTokenAfterTheFileHoldsIt() async throws {
        let agent = try await ToolsAgent()
        let log = agent.directory + "/child.log"
        let file = agent.directory + "/token"
        let exec = try Self.exec(agent, ["--file", file, "--rotate-signal", "HUP"], child: [log, "file:\(file)", "exit=7"])
        let initial = try await agent.token()
        var tokens = [initial]
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).first?.hasSuffix(" \(initial)") == true }, "\(exec.output)")
        var info = stat()
        #expect(stat(file, &info) == 0 && info.st_mode & 0o777 == 0o600, "a private file")
        for _ in 0..<3 {
            let next = try await agent.rotate()
            tokens.append(next)
            #expect(await Self.waitFor(log, "hup \(next)"), "\(exec.output)")
        }
        #expect(Array(ToolsAgent.lines(log).dropFirst()) == tokens.dropFirst().map { "hup \($0)" }, "one signal per token, no restart")

        // Signals are forwarded; the child's exit status is tokend's.
        exec.signal(SIGUSR1)
        #expect(await Self.waitFor(log, "usr1"))
        exec.signal(SIGTERM)
        #expect(await exec.wait(timeout: .seconds(30)) == 7, "\(exec.output)")
        #expect(ToolsAgent.lines(log).last == "term")
        #expect(!FileManager.default.fileExists(atPath: file), "the token file goes with the command")
        await agent.stop()
    }

    @Test func aChildThatIgnoresTheStopSignalIsKilledAfterTheGraceTime() async throws {
        let agent = try await ToolsAgent()
        let log = agent.directory + "/child.log"
        let exec = try Self.exec(agent, ["--env", "T", "--grace", "3"], child: [log, "env:T", "ignore-term"])
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).count == 1 }, "\(exec.output)")
        let next = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).last?.hasSuffix(" \(next)") == true }, "\(exec.output)")
        #expect(ToolsAgent.lines(log).count == 3, "start, term-ignored, start: \(ToolsAgent.lines(log))")
        #expect(ToolsAgent.lines(log)[1] == "term-ignored")
        exec.signal(SIGKILL)
        _ = await exec.wait(timeout: .seconds(10))
        if let child = ToolsAgent.lines(log).last.flatMap(Self.pid) { kill(child, SIGKILL) }
        await agent.stop()
    }

    @Test func theChildsOwnExitStatusIsPassedOn() async throws {
        let agent = try await ToolsAgent()
        let log = agent.directory + "/child.log"
        let exits = try Self.exec(agent, ["--env", "T"], child: [log, "env:T", "exit-now=3"])
        #expect(await exits.wait(timeout: .seconds(60)) == 3, "\(exits.output)")
        // Killed by a signal: 128 + its number, as a shell reports it.
        let killed = try Self.exec(agent, ["--env", "T"], child: [log, "env:T"])
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).count == 2 })
        if let child = ToolsAgent.lines(log).last.flatMap(Self.pid) { kill(child, SIGKILL) }
        #expect(await killed.wait(timeout: .seconds(60)) == 128 + SIGKILL, "\(killed.output)")
        let missing = try ChildProcess(
            CommandRunner.tokendPath, ["exec", "--socket", agent.socketPath, "--identity", ToolsAgent.identity, "--env", "T", "--", "/nonexistent/cmd"],
            output: agent.directory + "/missing.out")
        #expect(await missing.wait(timeout: .seconds(60)) == 127)
        await agent.stop()
    }

    @Test func brokenOptionsAreUsageErrorsAndAgentErrorsKeepTheirCodes() async throws {
        let agent = try await ToolsAgent()
        let base = ["exec", "--socket", agent.socketPath, "--identity", ToolsAgent.identity]
        let usage: [[String]] = [
            ["--env", "1BAD", "--", "true"], ["--env", "", "--", "true"], ["--env", "A B", "--", "true"],
            ["--env", "T", "--file", "/tmp/x", "--", "true"], ["--", "true"], ["--env", "T"], ["--env", "T", "--", ""],
            ["--env", "T", "--grace", "-1", "--", "true"], ["--env", "T", "--debounce", "nan", "--", "true"],
            ["--env", "T", "--debounce", "1e9", "--", "true"], ["--env", "T", "--rotate-signal", "HUP", "--", "true"],
            ["--file", "/tmp/x", "--rotate-signal", "BOGUS", "--", "true"], ["--env", "T", "--stop-signal", "99", "--", "true"],
            ["--env", "T", "--stop-signal", "STOP", "--", "true"], ["--file", "", "--", "true"],
        ]
        for arguments in usage {
            let result = try await CommandRunner.tokend(base + arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
        }
        let badName = try await CommandRunner.tokend(["exec", "--socket", agent.socketPath, "--identity", "a b", "--env", "T", "--", "true"])
        #expect(badName.status == 64)
        let unknown = try await CommandRunner.tokend(
            ["exec", "--socket", agent.socketPath, "--identity", "not-there", "--env", "T", "--", "true"])
        #expect(unknown.status == 15, "\(unknown.stderr)")
        let noAgent = try await CommandRunner.tokend(
            ["exec", "--socket", agent.directory + "/none.sock", "--identity", ToolsAgent.identity, "--env", "T", "--", "true"])
        #expect(noAgent.status == 14)
        await agent.stop()
    }
}
