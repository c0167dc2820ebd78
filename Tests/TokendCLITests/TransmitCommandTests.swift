import Foundation
import Testing
import TokendTestKit

/// `tokend transmit ...` and `tokend check-config`, run as an operator runs
/// them, against the fake Transmit server over loopback HTTP.
@Suite("tokend transmit and check-config commands")
final class TransmitCommandTests {
    let directory: String
    var configPath: String { directory + "/tokend.toml" }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: directory + "/transmit.secret", contents: Data((FakeTransmitServer.clientSecret + "\n").utf8),
            attributes: [.posixPermissions: 0o600])
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func writeConfig(baseURL: String, extraProvider: Bool = false) {
        var text = """
            [providers.transmit-test]
            kind = "transmit"
            base_url = "\(baseURL)"
            allow_insecure_http = true
            client_id = "\(FakeTransmitServer.clientID)"
            client_secret_file = "\(directory)/transmit.secret"
            timeout = 10

            """
        if extraProvider {
            text += """
                [providers.other]
                kind = "transmit"
                region = "sandbox"
                client_id = "x"
                client_secret_file = "\(directory)/transmit.secret"

                """
        }
        _ = FileManager.default.createFile(atPath: configPath, contents: Data(text.utf8))
    }

    @Test func sessionsAreListedThenRevoked() async throws {
        let fake = try await FakeTransmitServer.start()
        writeConfig(baseURL: fake.baseURL)
        let (_, first) = fake.mintSession(userID: "user-42")
        let (_, second) = fake.mintSession(userID: "user-42")

        let listed = try await CommandRunner.tokend(["transmit", "sessions", "user-42", "--config", configPath])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.hasPrefix("SESSION ID"))
        #expect(listed.stdout.contains(first) && listed.stdout.contains(second))

        let json = try await CommandRunner.tokend(["transmit", "sessions", "user-42", "--config", configPath, "--json"])
        let lines = json.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: String]
        #expect(object?["session_id"].map { [first, second].contains($0) } == true)
        #expect(object?["expires_at"]?.hasPrefix("20") == true)

        let revoked = try await CommandRunner.tokend(["transmit", "revoke-sessions", "user-42", "--config", configPath])
        #expect(revoked.status == 0, "\(revoked.stderr)")
        #expect(!fake.isSessionActive(first) && !fake.isSessionActive(second))
        let empty = try await CommandRunner.tokend(["transmit", "sessions", "user-42", "--config", configPath])
        #expect(empty.stdout == "no active sessions for user-42\n")
        await fake.shutdown()
    }

    @Test func providerFailuresHaveExitCodes() async throws {
        let fake = try await FakeTransmitServer.start()
        writeConfig(baseURL: fake.baseURL)
        fake.inject(.status(503), path: "/cis/v1/auth/users/u/sessions")
        let unavailable = try await CommandRunner.tokend(["transmit", "sessions", "u", "--config", configPath])
        #expect(unavailable.status == 8)
        #expect(unavailable.stderr.contains("HTTP 503"))

        fake.inject(.status(403), path: "/cis/v1/auth/users/u/sessions")
        let forbidden = try await CommandRunner.tokend(["transmit", "sessions", "u", "--config", configPath])
        #expect(forbidden.status == 9)
        await fake.shutdown()

        let unreachable = try await CommandRunner.tokend(["transmit", "sessions", "u", "--config", configPath])
        #expect(unreachable.status == 8)
        #expect(!unreachable.stderr.contains(FakeTransmitServer.clientSecret))
    }

    @Test func severalProvidersNeedAChoice() async throws {
        writeConfig(baseURL: "http://127.0.0.1:9", extraProvider: true)
        let result = try await CommandRunner.tokend(["transmit", "sessions", "u", "--config", configPath])
        #expect(result.status == 2)
        #expect(result.stderr.contains("pick one with --provider (other, transmit-test)"))
        let unknown = try await CommandRunner.tokend(["transmit", "sessions", "u", "--config", configPath, "--provider", "nope"])
        #expect(unknown.status == 2)
    }

    @Test func checkConfigPassesAndFailsWithExitCodes() async throws {
        writeConfig(baseURL: "http://127.0.0.1:9")
        let good = try await CommandRunner.tokend(["check-config", "--config", configPath])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("provider transmit-test: transmit"))

        _ = FileManager.default.createFile(atPath: configPath, contents: Data("[vault]\npath = 1\nbogus = true\n".utf8))
        let bad = try await CommandRunner.tokend(["check-config", "--config", configPath])
        #expect(bad.status == 2)
        #expect(bad.stderr == """
            tokend: config: \(configPath): vault.path: must be a string, not an integer
            tokend: config: \(configPath): vault.bogus: unknown key

            """)
        let missing = try await CommandRunner.tokend(["check-config", "--config", directory + "/missing.toml"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("configuration file does not exist"))
    }

    @Test func vaultCommandsReadTheVaultFromTheConfig() async throws {
        _ = FileManager.default.createFile(atPath: configPath, contents: Data("""
            [vault]
            path = "\(directory)/state/vault.db"
            key_file = "\(directory)/keys/vault.key"
            """.utf8))
        let created = try await CommandRunner.tokend(["vault", "init", "--config", configPath])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(FileManager.default.fileExists(atPath: directory + "/state/vault.db"))
        #expect(FileManager.default.fileExists(atPath: directory + "/keys/vault.key"))
        let info = try await CommandRunner.tokend(["vault", "info", "--config", configPath])
        #expect(info.stdout.contains("vault: \(directory)/state/vault.db"))
    }
}
