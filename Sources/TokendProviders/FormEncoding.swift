import Foundation

/// `application/x-www-form-urlencoded` as RFC 6749 Appendix B specifies it,
/// and HTTP Basic credentials as RFC 6749 §2.3.1 builds them.
enum FormEncoding {
    /// Characters left as they are; everything else is percent-encoded
    /// (spaces become `+`).
    private static let unreserved: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._*".utf8))

    static func encode(_ fields: [(String, String)]) -> Data {
        Data(fields.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&").utf8)
    }

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                result.append(Character(UnicodeScalar(byte)))
            } else if byte == 0x20 {
                result.append("+")
            } else {
                result.append(String(format: "%%%02X", byte))
            }
        }
        return result
    }

    /// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 asks for
    /// the form encoding of each part before joining them.
    static func basicAuthorization(clientID: String, clientSecret: String) -> String {
        let credentials = "\(escape(clientID)):\(escape(clientSecret))"
        return "Basic " + Data(credentials.utf8).base64EncodedString()
    }
}
