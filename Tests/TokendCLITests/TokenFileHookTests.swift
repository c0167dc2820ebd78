import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `tokend token-file`: the file follows the token; after each rewrite the
/// hooks run once (a pid file's process is signalled, a command is run).
@Suite("tokend token-file: rotation hooks", .serialized)
struct TokenFileHookTests {
    static func keeper(_ agent: ToolsAgent, _ options: [String]) throws -> ChildProcess {
        try ChildProcess(
            CommandRunner.tokendPath,
            ["token-file", "--socket", agent.socketPath, "--identity", ToolsAgent.identity, "--path", agent.directory + "/token"] + options,
            output: agent.directory + "/keeper.out")
    }

    static func fileToken(_ agent: ToolsAgent) -> String? {
        (try? String(contentsOfFile: agent.directory + "/token", encoding: .utf8))?.trimmingCharacters(in: .newlines)
    }

    @Test func thePidFilesProcessIsSignalledOncePerNewToken() async throws {
        let agent = try await ToolsAgent()
        let (log, pidFile, tokenFile) = (agent.directory + "/child.log", agent.directory + "/child.pid", agent.directory + "/token")
        let keeper = try Self.keeper(agent, ["--pid-file", pidFile, "--signal", "HUP", "--debounce", "0.2"])
        let initial = try await agent.token()
        var tokens = [initial]
        #expect(await eventually(timeout: .seconds(60)) { Self.fileToken(agent) == initial }, "\(keeper.output)")
        var info = stat()
        #expect(stat(tokenFile, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let program = try ChildProcess(
            "/usr/bin/env", ["python3", ToolsAgent.scripts + "/child.py", log, "file:\(tokenFile)", "pid-file=\(pidFile)"],
            output: agent.directory + "/program.out")
        #expect(await eventually(timeout: .seconds(60)) { FileManager.default.fileExists(atPath: pidFile) })
        for _ in 0..<3 {
            let next = try await agent.rotate()
            tokens.append(next)
            #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).contains("hup \(next)") }, "\(keeper.output)")
        }
        #expect(Array(ToolsAgent.lines(log).dropFirst()) == tokens.dropFirst().map { "hup \($0)" })
        keeper.signal(SIGTERM)
        #expect(await keeper.wait(timeout: .seconds(30)) == 0)
        #expect(Self.fileToken(agent) == tokens.last, "the file stays for the program that reads it")
        #expect(!keeper.output.contains(tokens[0]))
        await program.kill()
        await agent.stop()
    }

    @Test func aHookCommandRunsOnceAfterQuietAndSeesTheTokenOnlyWhenAsked() async throws {
        let agent = try await ToolsAgent()
        let (log, tokenFile) = (agent.directory + "/hook.log", agent.directory + "/token")
        let hook = ["--", "python3", ToolsAgent.scripts + "/hook.py", log, tokenFile]
        let plain = try Self.keeper(agent, ["--debounce", "20"] + hook)
        let first = try await agent.token()
        #expect(await eventually(timeout: .seconds(60)) { Self.fileToken(agent) == first }, "\(plain.output)")
        // Two rotations within the debounce time: one hook run, for the last.
        _ = try await agent.rotate()
        let second = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { !ToolsAgent.lines(log).isEmpty }, "\(plain.output)")
        let third = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).count == 2 }, "\(plain.output)")
        #expect(ToolsAgent.lines(log) == ["hook stdin= file=\(second) leaked=False", "hook stdin= file=\(third) leaked=False"])
        plain.signal(SIGTERM)
        #expect(await plain.wait(timeout: .seconds(30)) == 0)

        let withStdin = try Self.keeper(agent, ["--debounce", "0.1", "--token-stdin"] + hook)
        #expect(await eventually(timeout: .seconds(60)) { Self.fileToken(agent) == third })
        let fourth = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { ToolsAgent.lines(log).count == 3 }, "\(withStdin.output)")
        #expect(ToolsAgent.lines(log).last == "hook stdin=\(fourth) file=\(fourth) leaked=False")
        withStdin.signal(SIGTERM)
        #expect(await withStdin.wait(timeout: .seconds(30)) == 0)
        await agent.stop()
    }

    @Test func aHookThatOverrunsItsTimeoutIsKilledAndLaterRotationsStillRunHooks() async throws {
        let agent = try await ToolsAgent()
        let keeper = try Self.keeper(agent, ["--debounce", "0.1", "--timeout", "0.5", "--", "/bin/sleep", "600"])
        let first = try await agent.token()
        #expect(await eventually(timeout: .seconds(60)) { Self.fileToken(agent) == first })
        @Sendable func count(_ text: String) -> Int { keeper.output.components(separatedBy: text).count - 1 }
        _ = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { count("exited with status 137") == 1 }, "\(keeper.output)")
        #expect(count("longer than its timeout") == 1)
        _ = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { count("exited with status 137") == 2 }, "\(keeper.output)")
        #expect(count("longer than its timeout") == 2, "the next rotation ran the hook again, and it was killed again")
        keeper.signal(SIGTERM)
        #expect(await keeper.wait(timeout: .seconds(30)) == 0)
        await agent.stop()
    }

    @Test func brokenPidFilesSignalNothing() async throws {
        let agent = try await ToolsAgent()
        let pidFile = agent.directory + "/broken.pid"
        let keeper = try Self.keeper(agent, ["--pid-file", pidFile, "--signal", "USR1", "--debounce", "0.1"])
        let first = try await agent.token()
        #expect(await eventually(timeout: .seconds(60)) { Self.fileToken(agent) == first })
        // Each of these would be dangerous to act on (pid 1, -1: every
        // process, 0: our group) or is not a pid at all.
        let contents = ["", "abc", "1", "-1", "0", "12 34", String(repeating: "9", count: 100), "\u{0}\u{1}"]
        for (index, content) in contents.enumerated() {
            try content.write(toFile: pidFile, atomically: true, encoding: .utf8)
            _ = try await agent.rotate()
            #expect(await eventually(timeout: .seconds(60)) {
                keeper.output.components(separatedBy: "does not hold a process id").count - 1 == index + 1
            }, "\(content.prefix(10)): \(keeper.output)")
        }
        try FileManager.default.removeItem(atPath: pidFile)
        _ = try await agent.rotate()
        #expect(await eventually(timeout: .seconds(60)) { keeper.output.contains("cannot open pid file") })
        let status = await keeper.wait(timeout: .milliseconds(1))
        #expect(status == nil, "still running after every broken pid file")
        keeper.signal(SIGTERM)
        #expect(await keeper.wait(timeout: .seconds(30)) == 0)
        await agent.stop()
    }

    @Test func brokenOptionsAreUsageErrors() async throws {
        let agent = try await ToolsAgent()
        let base = ["token-file", "--socket", agent.socketPath, "--identity", ToolsAgent.identity]
        let usage: [[String]] = [
            [], ["--path", ""], ["--path", agent.directory + "/t", "--mode", "0666"], ["--path", agent.directory + "/t", "--mode", "abc"],
            ["--path", agent.directory + "/t", "--mode", "0077"], ["--path", agent.directory + "/t", "--signal", "NOPE"],
            ["--path", agent.directory + "/t", "--token-stdin"], ["--path", agent.directory + "/t", "--timeout", "0"],
            ["--path", agent.directory + "/t", "--debounce", "-3"], ["--path", agent.directory + "/t", "--pid-file", ""],
            ["--path", agent.directory + "/t", "--", ""],
        ]
        for arguments in usage {
            let result = try await CommandRunner.tokend(base + arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
        }
        let unwritable = try await CommandRunner.tokend(base + ["--path", agent.directory + "/missing-dir/t"])
        #expect(unwritable.status == 7, "\(unwritable.stderr)")
        await agent.stop()
    }
}
