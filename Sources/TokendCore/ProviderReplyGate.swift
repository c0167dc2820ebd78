import Foundation

/// The one check every token set from a provider passes before anything
/// else sees it, whatever the provider, grant or parser.
///
/// A provider is trusted to issue tokens for its own identities, never to
/// steer the agent: a value that could break the line protocol (a newline
/// in a token), the arithmetic (a lifetime of 1e300 or NaN), or memory (a
/// megabyte "token") is refused as `malformed_response`, and the identity
/// keeps its old token. Lifetimes are clamped into ``lifetimeRange``.
package enum ProviderReplyGate {
    /// Lifetimes outside this range are clamped into it: a negative one
    /// means "already expired"; anything over a year is treated as a year
    /// (the token is then refreshed early, which is harmless).
    package static let lifetimeRange: ClosedRange<TimeInterval> = 0...(365 * 24 * 3600)
    /// Longest access token accepted (large JWTs with many claims fit).
    package static let maximumAccessTokenLength = 16 * 1024
    /// Longest refresh token, session id or scope accepted.
    package static let maximumSecretLength = 8 * 1024
    /// Longest token type accepted (`Bearer`, `DPoP`, `N_A`...).
    package static let maximumTokenTypeLength = 64

    /// `grant`, checked and with its lifetime clamped.
    ///
    /// - Throws: ``ProviderError`` `.malformedResponse` naming the field and
    ///   what is wrong with it, never its value.
    package static func checked(_ grant: TokenGrant, from source: String) throws -> TokenGrant {
        func refuse(_ why: String) -> ProviderError {
            ProviderError(.malformedResponse, "\(source) returned \(why)")
        }
        guard grant.lifetime.isFinite else { throw refuse("a token lifetime that is not a finite number") }
        guard Self.isB64Token(grant.accessToken.exposedValue, maximumLength: maximumAccessTokenLength) else {
            throw refuse(
                "an access_token that is empty, longer than \(maximumAccessTokenLength) bytes, or has characters "
                    + "outside RFC 6750's b64token")
        }
        guard Self.isTokenType(grant.tokenType) else {
            throw refuse("a token_type that is not 1 to \(maximumTokenTypeLength) letters, digits, '-', '.' or '_'")
        }
        if let token = grant.refreshToken, !Self.isVSCHAR(token.exposedValue, maximumLength: maximumSecretLength) {
            throw refuse("a refresh_token that is empty, longer than \(maximumSecretLength) bytes, or not printable ASCII")
        }
        if let session = grant.sessionID, !Self.isVSCHAR(session.exposedValue, maximumLength: maximumSecretLength) {
            throw refuse("a session_id that is empty, longer than \(maximumSecretLength) bytes, or not printable ASCII")
        }
        var checked = grant
        // tokend does not use the scope: a strange one is dropped, not a
        // reason to refuse a reply that may carry a rotated refresh token.
        if let scope = grant.scope, !Self.isVSCHAR(scope, maximumLength: maximumSecretLength) { checked.scope = nil }
        checked.lifetime = min(max(grant.lifetime, lifetimeRange.lowerBound), lifetimeRange.upperBound)
        return checked
    }

    /// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
    package static func isB64Token(_ text: String, maximumLength: Int) -> Bool {
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        var padding = false
        var body = 0
        for byte in bytes {
            if byte == UInt8(ascii: "=") {
                padding = true
                continue
            }
            guard !padding, isTokenCharacter(byte) || byte == UInt8(ascii: "~") || byte == UInt8(ascii: "+")
                || byte == UInt8(ascii: "/")
            else { return false }
            body += 1
        }
        return body > 0
    }

    /// RFC 6749 §A.13 `type-name`: `1*( "-" / "." / "_" / DIGIT / ALPHA )`.
    package static func isTokenType(_ text: String) -> Bool {
        let bytes = text.utf8
        return !bytes.isEmpty && bytes.count <= maximumTokenTypeLength && bytes.allSatisfy(isTokenCharacter)
    }

    /// RFC 6749 §A.17 `refresh-token = 1*VSCHAR` (printable ASCII and the
    /// space): what a provider may rotate to. (Refresh tokens never travel
    /// on a reply line; over `ENROLL` they must do without spaces.)
    package static func isVSCHAR(_ text: String, maximumLength: Int) -> Bool {
        let bytes = text.utf8
        return !bytes.isEmpty && bytes.count <= maximumLength && bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }
}
