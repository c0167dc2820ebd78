import Foundation

/// The rules an enrollment must keep, whoever writes it: `ENROLL` on the
/// socket, an `[identities.*]` section, `tokend vault import`, and the
/// engine itself before it writes the vault. Each entry point checks its
/// own syntax (JSON types, TOML keys, option words) and then these, so the
/// same identity is accepted or refused the same way everywhere.
extension Enrollment {
    /// A broken rule, with the field at fault named as the protocol and the
    /// import format spell it; each entry point may rename it for its users.
    package struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        package enum Field: String, Sendable, Hashable {
            case grant
            case refreshToken = "refresh_token"
            case sessionID = "session_id"
            case accessToken = "access_token"
            case expiresIn = "expires_in"
            case allow
            case refreshAt = "refresh_at"
        }

        package let field: Field
        package let message: String
        package var description: String { message }
    }

    /// Where in a token's lifetime an identity may ask to be refreshed: at
    /// the ends, a refresh would come at once (a loop) or too late.
    package static let refreshAtRange: ClosedRange<Double> = 0.01...0.99

    /// Checks every rule; throws the first one broken. Messages hold names
    /// and rules, never a secret.
    package func validate() throws(Problem) {
        if let wrong = allowRules.first(where: { AccessRule($0) == nil }) {
            throw Problem(
                field: .allow,
                message: "allow rule \(String(wrong.prefix(64)).debugDescription) is not uid:N, user:NAME, gid:N, group:NAME or unit:NAME.service")
        }
        if let refreshAt, !Self.refreshAtRange.contains(refreshAt) {
            throw Problem(field: .refreshAt, message: "refresh_at must be a fraction from 0.01 to 0.99")
        }
        if let accessToken {
            // What a provider could not hand out, an admin cannot enroll
            // either: the token is served on one reply line.
            guard ProviderReplyGate.isB64Token(accessToken.exposedValue, maximumLength: ProviderReplyGate.maximumAccessTokenLength)
            else {
                throw Problem(
                    field: .accessToken,
                    message: "access_token must be an RFC 6750 b64token of at most \(ProviderReplyGate.maximumAccessTokenLength) bytes")
            }
        }
        if (accessToken == nil) != (accessTokenExpiresAt == nil) {
            throw Problem(field: .expiresIn, message: "access_token and expires_in go together")
        }
        switch grant {
        case .refreshToken where refreshToken == nil && sessionID == nil:
            // (A Transmit identity may start from its session alone: the
            // first refresh authenticates it silently.)
            throw Problem(field: .refreshToken, message: "grant refresh_token needs a refresh token")
        case .session where sessionID == nil && sessionGroup == nil:
            throw Problem(field: .sessionID, message: "grant session needs a session id")
        default:
            break
        }
    }
}
