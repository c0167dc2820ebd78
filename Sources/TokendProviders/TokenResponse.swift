import Foundation
import TokendCore

/// Parses token responses (RFC 6749 §5.1, and Transmit's token sets, which
/// share the shape) into ``TokenGrant``s.
enum TokenResponse {
    /// - Parameters:
    ///   - defaultLifetime: used when neither `expires_in` nor a JWT `exp`
    ///     says how long the token lives.
    ///   - endpoint: names the call in error messages.
    static func parse(
        _ body: Data, receivedAt: Date, defaultLifetime: TimeInterval, endpoint: String
    ) throws -> TokenGrant {
        func malformed(_ why: String) -> ProviderError {
            ProviderError(.malformedResponse, "\(endpoint) returned \(why)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw malformed("a body that is not a JSON object")
        }
        guard let accessToken = object["access_token"] as? String, !accessToken.isEmpty else {
            throw malformed(object["access_token"] == nil ? "no access_token" : "an access_token that is not a non-empty string")
        }
        let tokenType = try optionalString(object, "token_type", malformed) ?? "Bearer"
        let refreshToken = try optionalString(object, "refresh_token", malformed)
        let sessionID = try optionalString(object, "session_id", malformed)
        let scope = try optionalString(object, "scope", malformed)

        let lifetime: TimeInterval
        if let value = object["expires_in"], !(value is NSNull) {
            guard let seconds = number(value) else { throw malformed("an expires_in that is not a number") }
            lifetime = seconds
        } else if let expiry = jwtExpiry(accessToken) {
            lifetime = expiry.timeIntervalSince(receivedAt)
        } else {
            lifetime = defaultLifetime
        }
        let grant = TokenGrant(
            accessToken: Secret(accessToken), tokenType: tokenType.isEmpty ? "Bearer" : tokenType,
            receivedAt: receivedAt, lifetime: lifetime,
            refreshToken: refreshToken.flatMap { $0.isEmpty ? nil : Secret($0) },
            sessionID: sessionID.flatMap { $0.isEmpty ? nil : Secret($0) }, scope: scope)
        return try ProviderReplyGate.checked(grant, from: endpoint)
    }

    private static func optionalString(
        _ object: [String: Any], _ key: String, _ malformed: (String) -> ProviderError
    ) throws -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw malformed("a \(key) that is not a string") }
        return text
    }

    /// JSON numbers, and numeric strings (some servers quote `expires_in`).
    static func number(_ value: Any) -> Double? {
        if let number = value as? NSNumber {
            // JSON true/false also arrive as NSNumber, with objCType "c".
            guard number.objCType.pointee != 0x63 else { return nil }
            return number.doubleValue
        }
        if let text = value as? String { return Double(text) }
        return nil
    }

    /// The `exp` claim of a JWT access token, read without verifying the
    /// signature: it only tells when to refresh, it grants nothing.
    static func jwtExpiry(_ token: String) -> Date? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        payload += String(repeating: "=", count: (4 - payload.count % 4) % 4)
        guard let data = Data(base64Encoded: payload),
            let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let exp = claims["exp"].flatMap(number)
        else { return nil }
        return Date(timeIntervalSince1970: exp)
    }
}
