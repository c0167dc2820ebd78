import Foundation
import Logging
import TokendAgent
import TokendConfig
import TokendCore
import TokendVault

#if canImport(Glibc)
import Glibc
#endif

/// `tokend quickstart`: a complete demo in one command — a temporary vault
/// and key, the demo provider on loopback, three enrolled identities, and
/// the agent on a socket in a temporary directory — until Ctrl-C, which
/// removes it all.
package enum Quickstart {
    package static func run(lifetime: Int, logger: Logger) async throws {
        // A fresh private directory (0700) under the system temp directory.
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tokend-quickstart-\(UUID().uuidString.prefix(8))").path
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        } catch {
            throw Agent.Failure(description: "cannot create \(directory): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let provider = DemoTokenServer(lifetime: lifetime)
        try await provider.start()
        let secretPath = directory + "/demo-client.secret"
        guard FileManager.default.createFile(
            atPath: secretPath, contents: Data(provider.clientSecret.utf8), attributes: [.posixPermissions: 0o600])
        else { throw Agent.Failure(description: "cannot write \(secretPath)") }
        let socket = directory + "/tokend.sock"
        let configPath = directory + "/tokend.toml"
        let config = """
            # Written by `tokend quickstart`; removed when it stops.
            [vault]
            path = "\(directory)/vault.db"
            key_file = "\(directory)/vault.key"

            [socket]
            path = "\(socket)"

            [providers.demo]
            kind = "oauth2"
            token_endpoint = "\(provider.tokenURL)"
            client_id = "\(DemoTokenServer.clientID)"
            client_secret_file = "\(secretPath)"
            allow_insecure_http = true   # loopback only

            """
        guard FileManager.default.createFile(atPath: configPath, contents: Data(config.utf8)) else {
            throw Agent.Failure(description: "cannot write \(configPath)")
        }

        let vault = try SQLiteVault.create(at: directory + "/vault.db", kek: try KeyEncryptionKey.generate(at: directory + "/vault.key"))
        let me = ["uid:\(getuid())"]
        try await vault.enroll(batch: [
            Enrollment(name: IdentityName("demo-worker")!, provider: "demo", allowRules: me, refreshToken: Secret(provider.mintRefreshToken())),
            Enrollment(name: IdentityName("demo-batch")!, provider: "demo", allowRules: me, refreshToken: Secret(provider.mintRefreshToken())),
            Enrollment(name: IdentityName("demo-service")!, provider: "demo", grant: .clientCredentials, allowRules: me),
        ])
        try vault.close()

        let configuration: TokendConfiguration
        do {
            configuration = try ConfigLoader.load(path: configPath)
        } catch {
            throw Agent.Failure(description: "the quickstart's own configuration is invalid: \(error)")
        }
        let instructions = """

            tokend quickstart: a demo agent is running in \(directory)
              provider: a demo OAuth2 server on \(provider.tokenURL)
                        (\(lifetime)-second access tokens, rotating refresh tokens)
              identities: demo-worker, demo-batch (refresh_token), demo-service (client_credentials)

            In another terminal, try:
              swift run tokend get demo-worker --socket \(socket)
              swift run tokend watch demo-worker --socket \(socket)
              swift run tokend status --socket \(socket)
              printf 'GET demo-worker\\n' | socat - UNIX-CONNECT:\(socket)

            Press Ctrl-C to stop; the directory and everything in it is removed.

            """
        try await Agent.run(configuration: configuration, logger: logger) {
            FileHandle.standardOutput.write(Data(instructions.utf8))
        }
        await provider.shutdown()
    }
}
