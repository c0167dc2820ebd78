import ArgumentParser
import Foundation
import TokendConfig
import TokendCore

/// `tokend git-credential [--identity X] get|store|erase`: a git credential
/// helper (gitcredentials(7)).
///
/// `get` answers `username` and `password` (the access token) for the
/// identity named by `--identity`, else the one the configuration's
/// `[hosts]` maps the request's host to; for a host it does not know it
/// answers nothing, so git goes on to its next helper. `store` and `erase`
/// read their request and do nothing: the agent, not git, owns the token.
struct GitCredentialCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "git-credential",
        abstract: "A git credential helper: the access token as the password.",
        discussion: """
            git config --global credential.https://git.example.com.helper \
            '/usr/local/bin/tokend git-credential --identity ci-git --username x-access-token'
            (or install a git-credential-tokend link to tokend and use: helper = tokend --identity ci-git).
            """)

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case get, store, erase
    }

    @OptionGroup var options: HelperOptions
    @Option(help: "The identity (default: the one [hosts] maps the request's host to).") var identity: String?
    @Option(help: "The user name to answer (default: from [hosts], else \(HostCredential.defaultUsername)).") var username: String?
    @Argument(help: "get, store or erase (git gives it).") var operation: Operation

    func validate() throws {
        if let identity { _ = try IdentityName.argument(identity) }
        if let username, username.isEmpty || username.contains(where: { $0.isNewline || $0 == "\0" }) || username.utf8.count > 256 {
            throw ValidationError("--username must be one line of at most 256 bytes")
        }
    }

    func run() async throws {
        do throws(HelperFailure) {
            let request = try Self.parseRequest(try HelperInput.readAll())
            guard operation == .get else { return }
            var name = identity.flatMap(IdentityName.init)  // validate() has checked it
            var user = username
            if name == nil || user == nil {
                let configuration = try options.clientConfiguration()
                if let host = request["host"], let mapped = configuration.host(for: host) {
                    name = name ?? mapped.identity
                    user = user ?? mapped.username
                }
            }
            guard let name else { return }
            let token = try AgentToken.fetch(name, socket: try options.resolvedSocket())
            HelperOutput.write("""
                username=\(user ?? HostCredential.defaultUsername)
                password=\(token.value)
                password_expiry_utc=\(Int(token.expiry.timeIntervalSince1970))

                """)
        } catch {
            throw error
        }
    }

    /// `key=value` lines up to a blank line or the end, as git writes them.
    /// A value with a NUL, or a line without `=`, is a broken request.
    static func parseRequest(_ text: String) throws(HelperFailure) -> [String: String] {
        var attributes: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { break }
            guard let equals = line.firstIndex(of: "="), !line.contains("\0") else {
                throw HelperFailure("git sent a line that is not key=value", code: CLIExitCode.configuration)
            }
            attributes[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return attributes
    }
}
