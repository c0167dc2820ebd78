import ArgumentParser
import Foundation
import TokendConfig
import TokendCore

/// `tokend bazel-credential get`: the credential helper protocol of Bazel
/// (`--credential_helper`) and EngFlow's credential-helper-spec.
///
/// The request is `{"uri": "https://..."}` on standard input; the answer is
/// `{"headers": {"Authorization": ["Bearer <token>"]}, "expires": "<RFC 3339>"}`
/// for a host the configuration's `[hosts]` maps, else `{}` (no headers).
struct BazelCredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bazel-credential",
        abstract: "A Bazel credential helper (run as bazel-credential-tokend).",
        discussion: """
            ln -s /usr/local/bin/tokend /usr/local/bin/bazel-credential-tokend, then in .bazelrc: \
            common --credential_helper=cache.example.com=/usr/local/bin/bazel-credential-tokend
            """)

    @OptionGroup var options: HelperOptions
    @Argument(help: "get (Bazel gives it).") var operation: String

    func validate() throws {
        guard operation == "get" else { throw ValidationError("the only command is get") }
    }

    func run() async throws {
        do throws(HelperFailure) {
            let request = try HelperInput.jsonObject()
            guard let uri = request["uri"] as? String, HostKey.split(uri) != nil else {
                throw HelperFailure("the request has no \"uri\" string with a host", code: CLIExitCode.configuration)
            }
            guard let mapped = try options.clientConfiguration().host(for: uri) else {
                HelperOutput.json([String: Any]())
                return
            }
            let token = try AgentToken.fetch(mapped.identity, socket: try options.resolvedSocket())
            HelperOutput.json([
                "headers": ["Authorization": ["\(token.tokenType) \(token.value)"]],
                "expires": HelperOutput.timestamp(token.expiry),
            ])
        } catch {
            throw error
        }
    }
}
