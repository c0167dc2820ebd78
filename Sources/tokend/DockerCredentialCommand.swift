import ArgumentParser
import Foundation
import TokendConfig
import TokendCore

/// `docker-credential-tokend get|store|erase|list|version`: the
/// docker-credential-helpers protocol.
///
/// Docker runs a program named `docker-credential-<name>` for a registry
/// listed under `credHelpers` (or for all with `credsStore`); a link of that
/// name to `tokend` lands here (`Tokend.main` dispatches on argv[0]). The
/// registry comes on standard input; the configuration's `[hosts]` maps it
/// to an identity and a user name.
struct DockerCredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docker-credential",
        abstract: "A Docker credential helper (run as docker-credential-tokend).",
        discussion: """
            ln -s /usr/local/bin/tokend /usr/local/bin/docker-credential-tokend, then in ~/.docker/config.json: \
            {"credHelpers": {"registry.example.com": "tokend"}} and [hosts."registry.example.com"] in the configuration.
            """)

    /// The message Docker recognizes as "no credentials for this server".
    static let notFound = "credentials not found in native keychain"

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case get, store, erase, list, version
    }

    @OptionGroup var options: HelperOptions
    @Argument(help: "get, store, erase, list or version (docker gives it).") var operation: Operation

    func run() async throws {
        do throws(HelperFailure) {
            switch operation {
            case .version:
                HelperOutput.write("docker-credential-tokend (tokend \(TokendVersion.current))\n")
            case .store:
                // The agent owns the token; a `docker login` is acknowledged
                // and forgotten. Its JSON is still checked, and never echoed.
                let object = try HelperInput.jsonObject()
                guard object["ServerURL"] is String else { throw HelperFailure("no ServerURL in the request", code: 1) }
            case .erase:
                _ = try Self.serverURL()
            case .list:
                let configuration = try options.clientConfiguration()
                HelperOutput.json(Dictionary(configuration.hosts.map { ($0.host, $0.username) }, uniquingKeysWith: { a, _ in a }))
            case .get:
                let serverURL = try Self.serverURL()
                guard let mapped = try options.clientConfiguration().host(for: serverURL) else {
                    throw HelperFailure(Self.notFound, code: 1)
                }
                let token = try AgentToken.fetch(mapped.identity, socket: try options.resolvedSocket())
                HelperOutput.json(["ServerURL": serverURL, "Username": mapped.username, "Secret": token.value])
            }
        } catch {
            // The protocol reads errors from standard output.
            HelperOutput.write(error.message + "\n")
            throw ExitCode(1)
        }
    }

    /// The server URL docker writes on standard input: one line, no NUL.
    static func serverURL() throws(HelperFailure) -> String {
        let text = try HelperInput.readAll(limit: 4096).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, !text.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw HelperFailure("no server URL on standard input", code: 1)
        }
        return text
    }
}
