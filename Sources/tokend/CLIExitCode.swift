import ArgumentParser
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// The exit codes of every `tokend` command, so scripts can tell a wrong
/// key from a missing file without parsing text.
enum CLIExitCode {
    static let ok: Int32 = 0
    /// `vault verify` found identities whose values do not open.
    static let corruptFound: Int32 = 1
    /// Bad configuration or a request that cannot be carried out as asked
    /// (for example, `vault init` over an existing vault). Nothing changed.
    static let configuration: Int32 = 2
    /// The vault key does not match the vault.
    static let keyMismatch: Int32 = 3
    /// A key or vault file is accessible by group or others.
    static let insecurePermissions: Int32 = 4
    /// A vault, key file or credential is missing, unreadable or malformed.
    static let missingFile: Int32 = 5
    /// Another process (the running agent) holds the vault's writer lock.
    static let locked: Int32 = 6
    /// A storage failure, or a vault this build cannot read.
    static let storage: Int32 = 7
    /// A provider could not be reached or asked to retry later.
    static let providerUnavailable: Int32 = 8
    /// A provider refused the request (client credentials, permissions,
    /// a dead grant) or does not support it.
    static let providerRejected: Int32 = 9
    /// A provider answered with something that is not a valid response.
    static let providerMalformed: Int32 = 10
    /// The agent refused: the peer may not use this identity or verb.
    static let forbidden: Int32 = 11
    /// No valid token now (`ERR unavailable`); retry later.
    static let unavailable: Int32 = 12
    /// The provider rejected the grant; an operator must re-enroll.
    static let reauthRequired: Int32 = 13
    /// The agent's socket cannot be reached (not running, wrong path).
    static let cannotConnect: Int32 = 14
    /// The identity does not exist (answered to admins only).
    static let notFound: Int32 = 15
    /// Any other protocol error (bad request, busy, shutting down, internal).
    static let protocolError: Int32 = 16
    /// Wrong command-line usage (swift-argument-parser's convention).
    static let usage: Int32 = 64
    /// Any other failure (sysexits' EX_SOFTWARE): the message says what.
    static let otherFailure: Int32 = 70

    static let summary =
        "0 ok, 1 corrupt values found, 2 configuration error, 3 vault key does not match, "
        + "4 insecure file permissions, 5 missing or malformed file, 6 vault in use, "
        + "7 storage error, 8 provider unavailable, 9 provider refused the request, "
        + "10 provider answered garbage, 11 forbidden, 12 unavailable, 13 reauth required, "
        + "14 cannot connect, 15 not found, 16 other protocol error, 64 usage error, 70 any other failure."

    static func `for`(_ error: VaultError) -> Int32 {
        switch error.code {
        case .keyMismatch: keyMismatch
        case .insecurePermissions: insecurePermissions
        case .missingFile, .malformedKey: missingFile
        case .alreadyExists, .notFound, .generationConflict: configuration
        case .locked: locked
        case .corrupt, .incompatible, .storage: storage
        }
    }

    static func `for`(_ error: ProviderError) -> Int32 {
        switch error.kind {
        case .transient: providerUnavailable
        case .invalidGrant, .clientMisconfigured, .unsupported: providerRejected
        case .malformedResponse: providerMalformed
        }
    }

    static func `for`(protocolCode code: String) -> Int32 {
        switch code {
        case "forbidden": forbidden
        case "unavailable": unavailable
        case "reauth_required": reauthRequired
        case "not_found": notFound
        default: protocolError
        }
    }

    /// Prints `tokend: error: <message>` to stderr and exits.
    static func fail(_ message: String, code: Int32) -> Never {
        printError("tokend: error: \(message)")
        exit(code)
    }

    static func printError(_ line: String) {
        var text = line + "\n"
        text.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
