import Foundation
import TokendCore

/// Parses the session list. Tolerant of the envelope (`{"result": [...]}`,
/// `{"sessions": [...]}` or a bare array) and of time formats (epoch
/// seconds, epoch milliseconds or ISO 8601), strict about each session
/// having an id.
enum TransmitSessionList {
    static func parse(_ body: Data, endpoint: String) throws -> [TransmitSession] {
        guard let json = try? JSONSerialization.jsonObject(with: body) else {
            throw ProviderError(.malformedResponse, "\(endpoint) returned a body that is not JSON")
        }
        let items: [Any]
        if let array = json as? [Any] {
            items = array
        } else if let object = json as? [String: Any], let array = (object["result"] ?? object["sessions"]) as? [Any] {
            items = array
        } else {
            throw ProviderError(.malformedResponse, "\(endpoint) returned no session array")
        }
        return try items.map { item in
            guard let session = item as? [String: Any],
                let id = (session["session_id"] ?? session["id"]) as? String, !id.isEmpty
            else {
                throw ProviderError(.malformedResponse, "\(endpoint) returned a session without a session_id")
            }
            return TransmitSession(
                sessionID: Secret(id),
                createdAt: date(session["created_at"] ?? session["start"] ?? session["created"]),
                expiresAt: date(session["expires_at"] ?? session["expiry"] ?? session["expires"]))
        }
    }

    static func date(_ value: Any?) -> Date? {
        guard let value else { return nil }
        if let text = value as? String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            if let date = formatter.date(from: text) { return date }
            formatter.formatOptions = [.withInternetDateTime]
            if let date = formatter.date(from: text) { return date }
            return Double(text).flatMap(epoch)
        }
        return TokenResponse.number(value).flatMap(epoch)
    }

    /// Epoch seconds, or milliseconds when the number is too large to be
    /// seconds (after the year 5000).
    private static func epoch(_ number: Double) -> Date {
        Date(timeIntervalSince1970: number > 100_000_000_000 ? number / 1000 : number)
    }
}
