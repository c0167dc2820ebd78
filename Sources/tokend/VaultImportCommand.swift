import ArgumentParser
import Foundation
import TokendConfig
import TokendCore
import TokendVault

/// `tokend vault import`: enrolls identities from JSON lines on stdin, for
/// migrations and for setting up a host before the agent starts.
struct VaultImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Enroll identities from JSON lines on standard input (all or nothing).",
        discussion: """
            One JSON object per line:
              {"name": "billing", "provider": "corp", "refresh_token": "...", "session_id": "...",
               "grant": "refresh_token", "access_token": "...", "expires_in": 3600,
               "allow": ["uid:1001"], "refresh_at": 0.5}
            Only "name" and "provider" are required. Secrets come only from standard input, never
            from arguments. Every line is checked first; if any is wrong, nothing is imported and
            each problem is reported with its line number (exit 2). Existing names are replaced
            (their generation is bumped).
            """)

    @OptionGroup var vault: VaultOptions

    func run() async throws {
        var enrollments: [Enrollment] = []
        var problems: [String] = []
        var seen: Set<String> = []
        var lineNumber = 0
        let knownProviders = try? vault.config.loadIfPresent()?.providers.map(\.name)
        while let line = readLine(strippingNewline: true) {
            lineNumber += 1
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            do {
                let enrollment = try Self.parse(line)
                if let knownProviders, !knownProviders.contains(enrollment.provider) {
                    throw ValidationError("provider \"\(enrollment.provider)\" is not in the configuration")
                }
                guard seen.insert(enrollment.name.rawValue).inserted else {
                    throw ValidationError("identity \(enrollment.name) appears twice")
                }
                enrollments.append(enrollment)
            } catch let error as ValidationError {
                problems.append("line \(lineNumber): \(error.message)")
            }
        }
        guard problems.isEmpty else {
            for problem in problems { CLIExitCode.printError("tokend: import: \(problem)") }
            throw HelperFailure("nothing imported", code: CLIExitCode.configuration)
        }
        let (opened, settings) = try await vault.openStore()
        do {
            try await opened.enroll(batch: enrollments)
        } catch {
            try? await opened.shutdown()
            throw error
        }
        try await opened.shutdown()
        print("imported \(enrollments.count) identities into \(opened is SQLiteVault ? settings.path : opened.place)")
    }

    /// One line to an enrollment; errors never quote secret values.
    static func parse(_ line: String) throws -> Enrollment {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ValidationError("not a JSON object")
        }
        let allowedKeys: Set<String> = [
            "name", "provider", "grant", "refresh_token", "session_id", "client_secret", "access_token", "expires_in",
            "allow", "refresh_at", "token_type",
        ]
        if let unknown = object.keys.filter({ !allowedKeys.contains($0) }).sorted().first {
            throw ValidationError("unknown key \"\(unknown)\"")
        }
        func string(_ key: String) throws -> String? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let text = value as? String, !text.isEmpty else { throw ValidationError("\(key) must be a non-empty string") }
            return text
        }
        guard let rawName = try string("name") else { throw ValidationError("name is required") }
        guard let name = IdentityName(rawName) else {
            throw ValidationError("name \"\(rawName)\" is not a valid identity name ([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})")
        }
        guard let provider = try string("provider") else { throw ValidationError("provider is required") }
        var grant: GrantKind? = nil
        if let text = try string("grant") {
            guard let parsed = GrantKind(rawValue: text) else {
                throw ValidationError("grant must be refresh_token, client_credentials or session")
            }
            grant = parsed
        }
        var allow: [String] = []
        if let value = object["allow"] {
            guard let rules = value as? [String] else { throw ValidationError("allow must be an array of strings") }
            allow = rules
        }
        var refreshAt: Double? = nil
        if let value = object["refresh_at"] {
            guard let fraction = value as? Double else { throw ValidationError("refresh_at must be a number") }
            refreshAt = fraction
        }
        let accessToken = try string("access_token")
        var expiresAt: Date? = nil
        if let value = object["expires_in"] {
            let longest = ProviderReplyGate.lifetimeRange.upperBound
            guard let seconds = value as? Double, seconds > 0, seconds <= longest else {
                throw ValidationError("expires_in must be a number of seconds from 1 to \(Int(longest))")
            }
            expiresAt = Date().addingTimeInterval(seconds)
        }
        let refreshToken = try string("refresh_token")
        let sessionID = try string("session_id")
        let enrollment = Enrollment(
            name: name, provider: provider, grant: grant, allowRules: allow, refreshAt: refreshAt,
            refreshToken: refreshToken.map(Secret.init), sessionID: sessionID.map(Secret.init),
            clientSecret: try string("client_secret").map(Secret.init), accessToken: accessToken.map(Secret.init),
            accessTokenExpiresAt: expiresAt, tokenType: try string("token_type"))
        // The rules ENROLL and the configuration apply, too.
        do { try enrollment.validate() } catch { throw ValidationError(error.message) }
        return enrollment
    }
}

/// `tokend vault list`: identities and their state, no secrets.
struct VaultListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List identities with provider, grant, state, generation and token times (no secrets).",
        discussion: "Reads only, so it may run beside the agent.")

    @OptionGroup var vault: VaultOptions

    @Option(help: "Only names starting with this prefix.") var prefix: String?

    @Flag(help: "Print JSON lines instead of a table.") var json = false

    func run() async throws {
        let (opened, _) = try await vault.openStore(access: .reader)
        let records = try await Self.allRecords(opened, prefix: prefix)
        try await opened.shutdown()
        let formatter = ISO8601DateFormatter()
        func date(_ value: Date?) -> String { value.map(formatter.string(from:)) ?? "-" }
        if json {
            for record in records {
                var object: [String: Any] = [
                    "name": record.name.rawValue, "provider": record.provider, "grant": record.grant.rawValue,
                    "state": record.state.rawValue, "generation": record.generation,
                    "issued_at": date(record.issuedAt), "expires_at": date(record.expiresAt),
                ]
                if let error = record.lastError { object["last_error"] = error }
                if let group = record.sessionGroup { object["session"] = group }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            }
            return
        }
        print("NAME\tPROVIDER\tGRANT\tSTATE\tGENERATION\tISSUED\tEXPIRES\tSESSION")
        for record in records {
            print("\(record.name)\t\(record.provider)\t\(record.grant.rawValue)\t\(record.state.rawValue)\t\(record.generation)\t\(date(record.issuedAt))\t\(date(record.expiresAt))\t\(record.sessionGroup ?? "-")")
        }
    }

    /// Every record, page by page.
    static func allRecords(_ opened: any VaultStore, prefix: String? = nil) async throws -> [IdentityRecord] {
        var records: [IdentityRecord] = []
        var after: IdentityName? = nil
        while true {
            let page = try await opened.list(prefix: prefix, after: after, limit: 1000)
            records += page
            guard page.count == 1000, let last = page.last else { return records }
            after = last.name
        }
    }
}

/// `tokend vault sessions`: the shared Transmit sessions (SSO across apps),
/// with the identities (apps) that use each, and whether it is alive.
struct VaultSessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List shared sessions: their reference, identities, providers (apps) and state (never a session id).",
        discussion: """
            A session is `ended` once the provider rejected it for one of its identities (they all \
            need re-enrollment then). Reads only, so it may run beside the agent.
            """)

    @OptionGroup var vault: VaultOptions

    @Flag(help: "Print JSON lines instead of a table.") var json = false

    func run() async throws {
        let (opened, _) = try await vault.openStore(access: .reader)
        let records = try await VaultListCommand.allRecords(opened)
        try await opened.shutdown()
        let groups = Dictionary(grouping: records.filter { $0.sessionGroup != nil }, by: { $0.sessionGroup! })
        if !json { print("SESSION\tSTATE\tIDENTITIES") }
        for (group, members) in groups.sorted(by: { $0.key < $1.key }) {
            let ended = members.allSatisfy { $0.state == .reauthRequired || $0.state == .corrupt }
            let identities = members.map { "\($0.name)(\($0.provider))" }.joined(separator: ",")
            if json {
                let object: [String: Any] = [
                    "session": group, "state": ended ? "ended" : "active",
                    "identities": members.map { ["name": $0.name.rawValue, "provider": $0.provider, "state": $0.state.rawValue] },
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print("\(group)\t\(ended ? "ended" : "active")\t\(identities)")
            }
        }
    }
}
