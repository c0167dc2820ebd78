import ArgumentParser
import Foundation
import TokendCore
import TokendVault

/// Measures the vault: open + decrypt of N identities, and durable refresh
/// commits per second. Figures in docs/performance.md come from this program:
///
///     swift run -c release tokend-bench vault --identities 100000
///     swift run -c release tokend-bench engine --identities 100000
@main
struct TokendBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokend-bench",
        abstract: "Performance measurements for tokend (not part of the test suite).",
        subcommands: [VaultBench.self, EngineBench.self])
}

struct VaultBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault", abstract: "Open+decrypt time and refresh commits per second.")

    @Option(help: "Identities in the vault.") var identities = 100_000
    @Option(help: "Refresh results committed, one transaction each.") var commits = 5_000
    @Option(help: "Results per transaction in the group-commit run.") var batch = 64
    @Option(help: "Directory for the vault (default: a new temporary directory).") var directory: String?

    func run() async throws {
        let root = directory ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("tokend-bench-\(UUID().uuidString)").path
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: root) } }
        let vaultPath = root + "/vault.db"
        let keyPath = root + "/vault.key"
        let clock = ContinuousClock()

        var vault = try SQLiteVault.create(at: vaultPath, kek: try KeyEncryptionKey.generate(at: keyPath))
        let expiry = Date().addingTimeInterval(3600)
        let fillTime = try await clock.measure {
            for chunkStart in stride(from: 0, to: identities, by: 5_000) {
                let chunk = (chunkStart..<min(chunkStart + 5_000, identities)).map { index in
                    Enrollment(
                        name: IdentityName("user:\(index)@bench")!, provider: "transmit",
                        refreshToken: Secret(Self.token("rt", index)), sessionID: Secret(Self.token("sid", index)),
                        accessToken: Secret(Self.token("at", index, length: 900)), accessTokenExpiresAt: expiry)
                }
                try await vault.enroll(batch: chunk)
            }
        }
        try vault.close()
        print("fill: \(identities) identities in \(Self.seconds(fillTime)) s")

        var loaded: [StoredIdentity] = []
        let openTime = try await clock.measure {
            vault = try SQLiteVault.open(at: vaultPath, kek: try KeyEncryptionKey.load(from: .file(keyPath)))
            loaded = try await vault.loadAll()
        }
        precondition(loaded.count == identities && loaded.allSatisfy { $0.record.state == .fresh })
        print("open+decrypt: \(identities) identities (\(identities * 3) values) in \(Self.seconds(openTime)) s")

        var generations = Dictionary(uniqueKeysWithValues: loaded.map { ($0.record.name, $0.record.generation) })
        let names = loaded.map(\.record.name)
        loaded = []
        func result(_ index: Int) -> RefreshCommit {
            let name = names[index % names.count]
            return RefreshCommit(
                name: name, expectedGeneration: generations[name]!, accessToken: Secret(Self.token("at2", index, length: 900)),
                issuedAt: Date(), expiresAt: expiry, newRefreshToken: Secret(Self.token("rt2", index)))
        }

        let singleTime = try await clock.measure {
            for index in 0..<commits {
                let commit = result(index)
                generations[commit.name] = try await vault.commit(commit)
            }
        }
        print("durable commits, one per transaction: \(Self.rate(commits, singleTime)) commits/s")

        let batchTime = try await clock.measure {
            for start in stride(from: 0, to: commits, by: batch) {
                let results = (start..<min(start + batch, commits)).map { result($0 + commits) }
                let committed = try await vault.commit(batch: results)
                for (commit, generation) in zip(results, committed) { generations[commit.name] = generation! }
            }
        }
        print("durable commits, \(batch) per transaction: \(Self.rate(commits, batchTime)) commits/s")
        try vault.close()
    }

    static func token(_ prefix: String, _ index: Int, length: Int = 64) -> String {
        let body = "\(prefix)-\(index)-"
        return body + String(repeating: "x", count: max(0, length - body.count))
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.2f", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }

    static func rate(_ count: Int, _ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.0f", Double(count) / seconds)
    }
}
