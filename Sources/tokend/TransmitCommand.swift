import ArgumentParser
import Foundation
import TokendConfig
import TokendCore
import TokendProviders

/// `tokend transmit ...`: a user's Transmit backend sessions, through a
/// `transmit` provider of the configuration.
struct TransmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transmit",
        abstract: "List or revoke a user's Transmit Security backend sessions.",
        subcommands: [Sessions.self, RevokeSessions.self])

    struct ProviderOptions: ParsableArguments {
        @OptionGroup var config: ConfigOption

        @Option(
            help: ArgumentHelp(
                "The transmit provider of the config to use (needed only if it has several).", valueName: "name"))
        var provider: String?

        /// Runs `body` with the chosen provider and a client that is shut
        /// down afterwards, mapping provider errors to exit codes.
        func withProvider<T>(_ body: (TransmitProvider) async throws -> T) async throws -> T {
            let configuration = try config.load()
            let transmit = configuration.providers.compactMap { provider -> TransmitSettings? in
                if case .transmit(let settings) = provider { return settings }
                return nil
            }
            let settings: TransmitSettings
            if let provider {
                guard let match = transmit.first(where: { $0.name == provider }) else {
                    throw HelperFailure(
                        "no transmit provider named \(provider) in \(configuration.file) "
                            + "(transmit providers: \(transmit.map(\.name).joined(separator: ", ")))",
                        code: CLIExitCode.configuration)
                }
                settings = match
            } else {
                guard transmit.count == 1 else {
                    throw HelperFailure(
                        transmit.isEmpty
                            ? "\(configuration.file) has no transmit provider"
                            : "\(configuration.file) has several transmit providers; pick one with --provider "
                                + "(\(transmit.map(\.name).joined(separator: ", ")))",
                        code: CLIExitCode.configuration)
                }
                settings = transmit[0]
            }
            let http = ProviderHTTP()
            do {
                let result = try await body(try TransmitProvider(settings: settings, http: http))
                try? await http.shutdown()
                return result
            } catch let error as ProviderError {
                try? await http.shutdown()
                throw HelperFailure(error.message, code: CLIExitCode.for(error))
            } catch {
                try? await http.shutdown()
                throw error
            }
        }
    }

    struct Sessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a user's active backend sessions (session id, start, expiry).",
            discussion: "Session ids are credentials: the output is for the operator's eyes, not for logs.")

        @OptionGroup var options: ProviderOptions

        @Argument(help: "The Transmit user id.") var userID: String

        @Flag(help: "Print JSON lines instead of a table.") var json = false

        func run() async throws {
            let sessions = try await options.withProvider { try await $0.sessions(userID: userID) }
            let formatter = ISO8601DateFormatter()
            func date(_ value: Date?) -> String { value.map(formatter.string(from:)) ?? "-" }
            if json {
                for session in sessions {
                    let object: [String: String] = [
                        "session_id": session.sessionID.exposedValue, "created_at": date(session.createdAt),
                        "expires_at": date(session.expiresAt),
                    ]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                }
                return
            }
            guard !sessions.isEmpty else {
                print("no active sessions for \(userID)")
                return
            }
            let width = max(10, sessions.map(\.sessionID.exposedValue.count).max() ?? 0)
            func pad(_ text: String) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
            print("\(pad("SESSION ID"))  STARTED               EXPIRES")
            for session in sessions {
                print("\(pad(session.sessionID.exposedValue))  \(date(session.createdAt))  \(date(session.expiresAt))")
            }
        }
    }

    struct RevokeSessions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke-sessions",
            abstract: "End every backend session of a user (their refresh tokens stop working).")

        @OptionGroup var options: ProviderOptions

        @Argument(help: "The Transmit user id.") var userID: String

        func run() async throws {
            try await options.withProvider { try await $0.revokeSessions(userID: userID) }
            print("revoked all sessions of \(userID)")
        }
    }
}
