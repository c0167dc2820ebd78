import ArgumentParser
import CTokendSystem
import Foundation
import TokendCore
import TokendCache
import TokendEngine
import TokendVault

/// A provider that answers at once: measures tokend, not a network.
struct InstantProvider: TokenProvider {
    let name = "instant"
    let supportsSessionAuthentication = false

    func obtain(_ request: GrantRequest) async throws -> TokenGrant {
        TokenGrant(
            accessToken: Secret(String(repeating: "a", count: 900)), receivedAt: Date(), lifetime: 3600,
            refreshToken: Secret("rt-\(UInt64.random(in: 0...UInt64.max))"))
    }

    func endSession(_ sessionID: Secret) async throws {}
}

struct EngineBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Start time and memory at N identities; sustained durable refreshes per second.")

    @Option(help: "Identities in the vault.") var identities = 100_000
    @Option(help: "Forced refreshes to time.") var refreshes = 20_000
    @Option(help: "Concurrent refreshes (the engine's cap).") var concurrency = 64
    @Option(help: "Bytes per access token.") var tokenSize = 900

    func run() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let clock = ContinuousClock()
        var vault = try SQLiteVault.create(at: root + "/vault.db", kek: try KeyEncryptionKey.generate(at: root + "/vault.key"))
        let expiry = Date().addingTimeInterval(3600)
        for start in stride(from: 0, to: identities, by: 5_000) {
            try await vault.enroll(batch: (start..<min(start + 5_000, identities)).map { index in
                Enrollment(
                    name: IdentityName("user:\(index)@bench")!, provider: "instant", refreshToken: Secret("rt-\(index)"),
                    accessToken: Secret(String(repeating: "a", count: tokenSize)), accessTokenExpiresAt: expiry)
            })
        }
        try vault.close()
        print("rss before start: \(Self.rssMiB()) MiB")

        var settings = EngineSettings()
        settings.maxConcurrentRefreshes = concurrency
        settings.providerRate = 1_000_000
        settings.providerBurst = 1_000_000
        var engine: RefreshEngine<ContinuousClock>!
        let startTime = try await clock.measure {
            vault = try SQLiteVault.open(at: root + "/vault.db", kek: try KeyEncryptionKey.load(from: .file(root + "/vault.key")))
            engine = RefreshEngine(vault: vault, providers: ["instant": InstantProvider()], clock: ContinuousClock(), settings: settings)
            try await engine.start()
            // As `tokend serve` does after loading.
            _ = tokend_release_free_memory()
        }
        let statistics = await engine.currentStatistics
        print("open + load + plan \(identities) identities: \(VaultBench.seconds(startTime)) s (\(statistics.scheduled) timers)")
        print("rss after start: \(Self.rssMiB()) MiB")

        let loop = Task { try? await engine.run() }
        let count = min(refreshes, identities)
        let refreshTime = await clock.measure {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    let engine = engine!
                    group.addTask { _ = await engine.refresh(IdentityName("user:\(index)@bench")!, force: true) }
                }
            }
        }
        let done = await engine.currentStatistics.refreshes
        print("durable refreshes (intent + provider + commit): \(done) in \(VaultBench.seconds(refreshTime)) s = \(VaultBench.rate(done, refreshTime)) /s")
        print("rss after refreshes: \(Self.rssMiB()) MiB")
        loop.cancel()
        await loop.value
        try vault.close()
    }

    static func rssMiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return -1 }
        return kilobytes / 1024
    }
}
