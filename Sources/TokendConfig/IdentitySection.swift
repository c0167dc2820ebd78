import Foundation
import TokendCore

/// Parses `[identities.<name>]` sections.
enum IdentitySection {
    static func parse(
        name: String, _ reader: TableReader, providers: [ProviderConfiguration], environment: [String: String]
    ) -> IdentityConfiguration? {
        guard let identity = IdentityName(name) else {
            reader.report.add(key: reader.path, "is not a valid identity name ([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})")
            return nil
        }
        defer { reader.rejectUnknownKeys() }
        let provider = reader.string("provider", required: true)
        let grantText = reader.string("grant")
        let allow = reader.strings("allow") ?? []
        let refreshAt = reader.number("refresh_at", range: Enrollment.refreshAtRange)
        let refreshToken = secret(reader, "refresh_token_file")
        let sessionID = secret(reader, "session_id_file")
        let tokenFile = parseTokenFile(reader)

        guard let provider else { return nil }
        guard let configured = providers.first(where: { $0.name == provider }) else {
            reader.problem("provider", "no provider named \(provider) is configured")
            return nil
        }
        var grant = GrantKind.inferred(hasRefreshToken: refreshToken != nil, hasSessionID: sessionID != nil)
        if let grantText {
            guard let parsed = GrantKind(rawValue: grantText) else {
                reader.problem("grant", "must be refresh_token, client_credentials or session")
                return nil
            }
            grant = parsed
        }
        let declared = IdentityConfiguration(
            name: identity, provider: provider, grant: grant, allow: allow, refreshAt: refreshAt,
            refreshToken: refreshToken, sessionID: sessionID, tokenFile: tokenFile)
        do {
            try declared.enrollment.validate()
        } catch {
            // The same rules as ENROLL and vault import, told in this
            // file's own keys (secrets come from files here).
            switch error.field {
            case .refreshToken:
                reader.problem("refresh_token_file", "grant refresh_token needs the first refresh token in refresh_token_file")
            case .sessionID: reader.problem("session_id_file", "grant session needs session_id_file")
            default: reader.problem(error.field.rawValue, error.message)
            }
            return nil
        }
        if grant == .session && configured.kind != "transmit" {
            reader.problem("grant", "the session grant needs a transmit provider")
            return nil
        }
        return declared
    }

    private static func secret(_ reader: TableReader, _ key: String) -> Secret? {
        guard let path = reader.string(key) else { return nil }
        do {
            return try SecretFile.read(path: path)
        } catch {
            reader.problem(key, error.message)
            return nil
        }
    }

    private static func parseTokenFile(_ reader: TableReader) -> TokenFileConfiguration? {
        let path = reader.string("token_file")
        let mode = reader.mode("token_file_mode")
        let owner = reader.string("token_file_owner")
        guard let path else {
            if mode != nil || owner != nil { reader.problem("token_file", "token_file_mode and token_file_owner need token_file") }
            return nil
        }
        guard path.hasPrefix("/") else {
            reader.problem("token_file", "must be an absolute path")
            return nil
        }
        var file = TokenFileConfiguration(path: path)
        if let mode { file.mode = mode }
        if let owner {
            let parts = owner.split(separator: ":", maxSplits: 1).map(String.init)
            guard let uid = Accounts.uid(ofUser: parts[0]) else {
                reader.problem("token_file_owner", "no user named \(parts[0])")
                return nil
            }
            file.uid = uid
            if parts.count == 2 {
                guard let gid = Accounts.gid(ofGroup: parts[1]) else {
                    reader.problem("token_file_owner", "no group named \(parts[1])")
                    return nil
                }
                file.gid = gid
            }
        }
        return file
    }
}
