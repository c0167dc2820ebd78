/// Errors of the vault seam, matched by ``code``.
///
/// The message is for humans and never contains secret material; it names
/// the file or identity involved and, where there is one, the fix.
package struct VaultError: Error, Sendable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        /// The key-encryption key does not match the vault's key check.
        case keyMismatch = "key_mismatch"
        /// A key or vault file is readable or writable by group or others.
        case insecurePermissions = "insecure_permissions"
        /// A key file, credential or vault file is missing or unreadable.
        case missingFile = "missing_file"
        /// A key file does not hold 32 bytes (raw or base64).
        case malformedKey = "malformed_key"
        /// A vault already exists where one was to be created.
        case alreadyExists = "already_exists"
        /// Another process holds the vault's writer lock.
        case locked
        /// The identity does not exist.
        case notFound = "not_found"
        /// The identity changed since the refresh began.
        case generationConflict = "generation_conflict"
        /// A sealed value or wrapped key failed to open.
        case corrupt
        /// The file is not a tokend vault, or was written by a newer tokend.
        case incompatible
        /// SQLite or the file system failed.
        case storage
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
