import ArgumentParser
import Foundation
import TokendCore

/// `tokend kube-credential <identity>`: a client-go exec credential plugin.
///
/// kubectl runs it with `KUBERNETES_EXEC_INFO` holding an `ExecCredential`
/// request; the answer is an `ExecCredential` of the same `apiVersion` whose
/// `status` has the token and its expiry, so client-go caches the token
/// until then and runs the plugin again afterwards.
struct KubeCredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-credential",
        abstract: "Print an ExecCredential for kubectl (a client-go exec credential plugin).",
        discussion: """
            In a kubeconfig user: exec: {apiVersion: client.authentication.k8s.io/v1, command: tokend, \
            args: [kube-credential, <identity>], interactiveMode: Never}. The apiVersion of the answer is \
            the one in $KUBERNETES_EXEC_INFO (v1 or v1beta1).
            """)

    static let apiVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
    static let environmentVariable = "KUBERNETES_EXEC_INFO"

    @OptionGroup var options: HelperOptions
    @Argument(help: "The identity whose token kubectl sends.") var identity: String
    @Option(
        name: .customLong("api-version"),
        help: "The apiVersion to answer when $KUBERNETES_EXEC_INFO is not set (default: client.authentication.k8s.io/v1).")
    var apiVersion: String?

    func validate() throws {
        _ = try IdentityName.argument(identity)
        if let apiVersion, !Self.apiVersions.contains(apiVersion) {
            throw ValidationError("--api-version must be one of \(Self.apiVersions.joined(separator: ", "))")
        }
    }

    func run() async throws {
        do throws(HelperFailure) {
            let version = try Self.requestedVersion(
                ProcessInfo.processInfo.environment[Self.environmentVariable], fallback: apiVersion ?? Self.apiVersions[0])
            // validate() has checked the name.
            let token = try AgentToken.fetch(IdentityName(identity)!, socket: try options.resolvedSocket())
            HelperOutput.json(Self.credential(token, apiVersion: version))
        } catch {
            throw error
        }
    }

    /// The `apiVersion` kubectl asks for in `KUBERNETES_EXEC_INFO`.
    static func requestedVersion(_ execInfo: String?, fallback: String) throws(HelperFailure) -> String {
        guard let execInfo else { return fallback }
        guard execInfo.utf8.count <= HelperInput.limit,
            let object = try? JSONSerialization.jsonObject(with: Data(execInfo.utf8)) as? [String: Any]
        else {
            throw HelperFailure("\(environmentVariable) is not a JSON object", code: CLIExitCode.configuration)
        }
        guard let version = object["apiVersion"] as? String else {
            throw HelperFailure("\(environmentVariable) has no apiVersion string", code: CLIExitCode.configuration)
        }
        guard apiVersions.contains(version) else {
            let shown = version.unicodeScalars.allSatisfy { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F } && version.count <= 100
            throw HelperFailure(
                "\(environmentVariable) asks for apiVersion \(shown ? version : "(unprintable)"); supported: \(apiVersions.joined(separator: ", "))",
                code: CLIExitCode.configuration)
        }
        return version
    }

    static func credential(_ token: AgentToken, apiVersion: String) -> [String: Any] {
        [
            "apiVersion": apiVersion,
            "kind": "ExecCredential",
            "status": ["token": token.value, "expirationTimestamp": HelperOutput.timestamp(token.expiry)],
        ]
    }
}
