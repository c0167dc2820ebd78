import Foundation
import NIOHTTP1
import TokendCore

/// The error a provider put in a non-2xx response, in either shape tokend
/// meets: OAuth2's `{error, error_description}` (RFC 6749 §5.2) and
/// Transmit's `{message: string|[string], error_code: string|number}`.
struct ProviderErrorBody: Sendable, Hashable {
    var code: String?
    var description: String?

    init(code: String?, description: String?) {
        self.code = code
        self.description = description
    }

    /// Parses what it can; an unparseable body yields an empty value.
    init(parsing body: Data) {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            self.init(code: nil, description: nil)
            return
        }
        var code = object["error"] as? String
        if code == nil, let transmitCode = object["error_code"] {
            if let text = transmitCode as? String {
                code = text
            } else if let number = transmitCode as? NSNumber {
                code = number.stringValue
            }
        }
        var description = object["error_description"] as? String
        if description == nil {
            if let message = object["message"] as? String {
                description = message
            } else if let messages = object["message"] as? [Any] {
                description = messages.compactMap { $0 as? String }.joined(separator: "; ")
            }
        }
        self.init(code: code, description: description)
    }

    /// `code: description`, cut to a log-friendly length, with any secret
    /// the request carried scrubbed out (some servers echo their input).
    func summary(scrubbing secrets: [Secret]) -> String {
        var parts: [String] = []
        if let code { parts.append(code) }
        if let description, !description.isEmpty { parts.append(description) }
        var text = parts.joined(separator: ": ")
        for secret in secrets where secret.exposedValue.count >= 4 {
            text = text.replacingOccurrences(of: secret.exposedValue, with: "<redacted>")
        }
        text = String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        return text.count > 300 ? String(text.prefix(300)) + "..." : text
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
enum RetryAfter {
    static func seconds(from headers: HTTPHeaders, now: Date = Date()) -> Double? {
        guard let value = headers.first(name: "Retry-After")?.trimmingCharacters(in: .whitespaces) else {
            return nil
        }
        // Finite and at most a day: a provider may slow us down, not stop us.
        if let seconds = Double(value), seconds.isFinite, seconds >= 0 { return min(seconds, 24 * 3600) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: value) { return max(0, date.timeIntervalSince(now)) }
        }
        return nil
    }
}
