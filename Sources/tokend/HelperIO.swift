import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reading what a calling tool writes on standard input, with a bound: a
/// helper never buffers more than a credential request can be.
enum HelperInput {
    static let limit = 65_536

    /// All of standard input, or a failure if it is larger than `limit`
    /// or not UTF-8.
    static func readAll(limit: Int = limit) throws(HelperFailure) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            if bytes.count > limit { throw HelperFailure("standard input is larger than \(limit) bytes", code: CLIExitCode.configuration) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw HelperFailure("standard input is not UTF-8", code: CLIExitCode.configuration)
        }
        return text
    }

    /// A JSON object from standard input.
    static func jsonObject() throws(HelperFailure) -> [String: Any] {
        let text = try readAll()
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw HelperFailure("standard input is not a JSON object", code: CLIExitCode.configuration)
        }
        return object
    }
}

enum HelperOutput {
    /// RFC 3339 in UTC, whole seconds: what kubectl and Bazel parse.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// Writes `object` as one line of JSON to standard output.
    static func json(_ object: Any) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    static func write(_ text: String) {
        var remaining = Array(text.utf8)[...]
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            remaining = remaining.dropFirst(written)
        }
    }
}
