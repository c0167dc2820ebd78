import Crypto
import Foundation
import TokendCore

/// The 32-byte key that wraps the vault's data keys.
package struct KeyEncryptionKey: Sendable {
    let key: SymmetricKey
    /// Describes where the key came from, for error messages.
    package let origin: String

    init(bytes: [UInt8], origin: String) {
        self.key = SymmetricKey(data: bytes)
        self.origin = origin
    }

    /// Reads and checks a KEK.
    ///
    /// - Parameter environment: the process environment, injectable so tests
    ///   can point `CREDENTIALS_DIRECTORY` at a temp directory.
    package static func load(
        from source: KeySource, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KeyEncryptionKey {
        switch source {
        case .file(let path):
            return try load(path: path, what: "key file")
        case .credential(let name):
            switch SystemdCredential.path(of: name, environment: environment) {
            case .success(let path): return try load(path: path, what: "credential file")
            case .failure(let problem): throw VaultError(.missingFile, problem.message)
            }
        }
    }

    /// Generates a new random key file at `path` (mode 0600, 32 raw bytes).
    /// Fails if the file exists.
    package static func generate(at path: String) throws -> KeyEncryptionKey {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FilePermissions.createPrivateDirectory(directory) }
        try FilePermissions.createPrivateFile(path, contents: bytes)
        return KeyEncryptionKey(bytes: bytes, origin: "key file \(path)")
    }

    private static func load(path: String, what: String) throws -> KeyEncryptionKey {
        guard try FilePermissions.mode(of: path) != nil else {
            throw VaultError(.missingFile, "\(what) \(path) does not exist")
        }
        try FilePermissions.requirePrivate(path, what: what)
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw VaultError(.missingFile, "\(what) \(path) is not readable by this user")
        }
        guard let bytes = decode(Array(contents)) else {
            throw VaultError(
                .malformedKey,
                "\(what) \(path) must hold exactly 32 bytes, raw or base64 "
                    + "(create one with: head -c 32 /dev/urandom > \(path))")
        }
        return KeyEncryptionKey(bytes: bytes, origin: "\(what) \(path)")
    }

    /// Accepts 32 raw bytes, or base64 of 32 bytes with optional trailing
    /// whitespace (what `base64` and `systemd-creds` tooling tend to write).
    static func decode(_ contents: [UInt8]) -> [UInt8]? {
        if contents.count == 32 { return contents }
        let trimmed = String(decoding: contents, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let data = Data(base64Encoded: trimmed), data.count == 32 else { return nil }
        return Array(data)
    }
}
