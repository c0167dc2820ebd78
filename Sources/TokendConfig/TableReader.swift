import TOMLKit

/// Reads one TOML table with type checks, remembering which keys were read
/// so that unknown keys (usually typos) are reported instead of ignored.
final class TableReader {
    let table: TOMLTable
    let path: String
    let report: ProblemReport
    private var known: Set<String> = []

    init(_ table: TOMLTable, path: String, report: ProblemReport) {
        self.table = table
        self.path = path
        self.report = report
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func problem(_ key: String, _ message: String) {
        report.add(key: keyPath(key), message)
    }

    private func value(_ key: String, required: Bool) -> TOMLValueConvertible? {
        known.insert(key)
        guard let value = table[key] else {
            if required { problem(key, "is required") }
            return nil
        }
        return value
    }

    private func wrongType(_ key: String, _ value: TOMLValueConvertible, expected: String) {
        problem(key, "must be \(expected), not \(Self.describe(value.type))")
    }

    func string(_ key: String, required: Bool = false) -> String? {
        guard let value = value(key, required: required) else { return nil }
        guard let text = value.string else {
            wrongType(key, value, expected: "a string")
            return nil
        }
        if required && text.isEmpty {
            problem(key, "must not be empty")
            return nil
        }
        return text
    }

    func int(_ key: String, required: Bool = false, range: ClosedRange<Int>? = nil) -> Int? {
        guard let value = value(key, required: required) else { return nil }
        guard let number = value.int else {
            wrongType(key, value, expected: "an integer")
            return nil
        }
        if let range, !range.contains(number) {
            problem(key, "must be between \(range.lowerBound) and \(range.upperBound), not \(number)")
            return nil
        }
        return number
    }

    /// A number of seconds: an integer or a floating-point number.
    func seconds(_ key: String, range: ClosedRange<Double>) -> Double? {
        number(key, range: range, unit: " seconds")
    }

    /// A number (integer or floating-point) within `range`.
    func number(_ key: String, range: ClosedRange<Double>, unit: String = "") -> Double? {
        guard let value = value(key, required: false) else { return nil }
        guard let number = value.double ?? value.int.map(Double.init) else {
            wrongType(key, value, expected: unit.isEmpty ? "a number" : "a number of\(unit)")
            return nil
        }
        guard range.contains(number) else {
            problem(key, "must be between \(range.lowerBound) and \(range.upperBound)\(unit), not \(number)")
            return nil
        }
        return number
    }

    func bool(_ key: String) -> Bool? {
        guard let value = value(key, required: false) else { return nil }
        guard let flag = value.bool else {
            wrongType(key, value, expected: "true or false")
            return nil
        }
        return flag
    }

    func strings(_ key: String) -> [String]? {
        guard let value = value(key, required: false) else { return nil }
        guard let array = value.array else {
            wrongType(key, value, expected: "an array of strings")
            return nil
        }
        var result: [String] = []
        for element in array {
            guard let text = element.string else {
                problem(key, "must be an array of strings")
                return nil
            }
            result.append(text)
        }
        return result
    }

    func integers(_ key: String, range: ClosedRange<Int>) -> [Int]? {
        guard let value = value(key, required: false) else { return nil }
        guard let array = value.array else {
            wrongType(key, value, expected: "an array of integers")
            return nil
        }
        var result: [Int] = []
        for element in array {
            guard let number = element.int, range.contains(number) else {
                problem(key, "must be an array of integers from \(range.lowerBound) to \(range.upperBound)")
                return nil
            }
            result.append(number)
        }
        return result
    }

    /// File permission bits: an integer (`0o660`) or an octal string (`"0660"`).
    func mode(_ key: String) -> UInt32? {
        guard let value = value(key, required: false) else { return nil }
        var bits: Int?
        if let number = value.int {
            bits = number
        } else if let text = value.string {
            bits = Int(text.hasPrefix("0o") ? String(text.dropFirst(2)) : text, radix: 8)
        }
        guard let bits, (0...0o777).contains(bits) else {
            problem(key, "must be permission bits such as \"0660\" or 0o660")
            return nil
        }
        if bits & 0o007 != 0 {
            problem(key, "must not grant anything to others (o=---); use group to let clients in")
            return nil
        }
        return UInt32(bits)
    }

    func table(_ key: String) -> TOMLTable? {
        guard let value = value(key, required: false) else { return nil }
        guard let table = value.table else {
            wrongType(key, value, expected: "a table ([\(keyPath(key))])")
            return nil
        }
        return table
    }

    /// One of `choices`, by its raw value.
    func choice<T: RawRepresentable & CaseIterable>(_ key: String, required: Bool = false, as: T.Type) -> T?
    where T.RawValue == String {
        guard let text = string(key, required: required) else { return nil }
        guard let choice = T(rawValue: text) else {
            problem(key, "must be one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), not \"\(text)\"")
            return nil
        }
        return choice
    }

    /// Reports keys present in the table that nobody asked for.
    func rejectUnknownKeys() {
        for key in table.keys.sorted() where !known.contains(key) {
            problem(key, "unknown key")
        }
    }

    static func describe(_ type: TOMLType) -> String {
        switch type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a floating-point number"
        case .bool: "a boolean"
        case .date, .time, .dateTime: "a date or time"
        }
    }
}

/// Collects the problems of one file.
final class ProblemReport {
    let file: String
    private(set) var problems: [ConfigError.Problem] = []

    init(file: String) {
        self.file = file
    }

    func add(key: String, _ message: String) {
        problems.append(ConfigError.Problem(file: file, key: key, message: message))
    }
}
