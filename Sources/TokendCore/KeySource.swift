/// Where the key-encryption key (KEK) comes from. The KEK never touches the
/// vault file: it only wraps the data keys stored there.
package enum KeySource: Sendable, Hashable, CustomStringConvertible {
    /// A file holding 32 bytes, raw or base64; mode 0600 or 0400.
    case file(String)
    /// A systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>`, so
    /// `LoadCredentialEncrypted=` (and TPM2 sealing) work.
    case credential(String)

    package var description: String {
        switch self {
        case .file(let path): "key file \(path)"
        case .credential(let name): "systemd credential \(name)"
        }
    }
}
