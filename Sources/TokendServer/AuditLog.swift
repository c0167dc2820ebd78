import Crypto
import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// One line per access decision, for operators: who asked for what and
/// what they got, with a token fingerprint (never the token).
package final class AuditLog: Sendable {
    private let descriptor: Int32
    package let path: String
    private let lock = Mutex(())

    /// Opens (appends to) `path`, creating it with mode 0600.
    package init(path: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AuditLogError(message: "cannot open audit log \(path): \(String(cString: strerror(errno)))")
        }
        descriptor = fd
        self.path = path
    }

    deinit {
        close(descriptor)
    }

    /// `time=... pid=... uid=... gid=... verb=GET identity=x result=ok fingerprint=1a2b3c4d`
    package func record(peer: PeerCredentials, verb: String, identity: IdentityName?, result: String, token: Secret? = nil) {
        var line = "time=\(Self.timestamp()) pid=\(peer.pid) uid=\(peer.uid) gid=\(peer.gid) verb=\(verb)"
        line += " identity=\(identity?.rawValue ?? "-") result=\(result)"
        if let token { line += " fingerprint=\(Self.fingerprint(token))" }
        line += "\n"
        lock.withLock { _ in
            _ = line.withCString { write(descriptor, $0, strlen($0)) }
        }
    }

    /// First 8 hex digits of the SHA-256 of the token: enough to correlate
    /// a token seen elsewhere, useless to forge one.
    package static func fingerprint(_ token: Secret) -> String {
        SHA256.hash(data: Data(token.exposedValue.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    private static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}

package struct AuditLogError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
