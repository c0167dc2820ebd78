import Foundation
import Testing
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

@Suite("tokend quickstart")
struct QuickstartTests {
    @Test func theDemoServesTokensAndCleansUpOnCtrlC() async throws {
        let log = "/tmp/tokend-quickstart-test-\(UUID().uuidString.prefix(8)).log"
        defer { unlink(log) }
        let demo = try ChildProcess(CommandRunner.tokendPath, ["quickstart", "--lifetime", "5"], output: log)
        #expect(await eventually { demo.output.contains("Press Ctrl-C to stop") }, "\(demo.output)")
        let output = demo.output
        // The instructions name the socket: "tokend get demo-worker --socket <path>".
        let instruction = try #require(output.split(separator: "\n").first { $0.contains("tokend get demo-worker --socket ") })
        let socket = String(try #require(instruction.split(separator: " ").last))
        let directory = (socket as NSString).deletingLastPathComponent

        let first = try await CommandRunner.tokend(["get", "demo-worker", "--socket", socket])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasPrefix("demo-at-"))
        // Tokens live 5 s: a few seconds later the agent has rotated them.
        try await Task.sleep(for: .seconds(5))
        let later = try await CommandRunner.tokend(["get", "demo-worker", "--socket", socket])
        #expect(later.stdout.hasPrefix("demo-at-") && later.stdout != first.stdout)
        let status = try await CommandRunner.tokend(["status", "--socket", socket])
        #expect(status.stdout.hasPrefix("3 identities: 3 fresh"), "\(status.stdout)")

        demo.signal(SIGINT)
        #expect(await demo.wait(timeout: .seconds(30)) == 0)
        #expect(!FileManager.default.fileExists(atPath: directory), "Ctrl-C removes the demo's files")
    }
}
