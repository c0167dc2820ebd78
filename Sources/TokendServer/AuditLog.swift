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
    /// The open file, swapped by ``reopen()``; writes hold the lock.
    private let descriptor: Mutex<Int32>
    package let path: String
    /// A value type, made once: a formatter per line cost more than the
    /// rest of a `GET`.
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// Opens (appends to) `path`, creating it with mode 0600.
    package init(path: String) throws {
        descriptor = Mutex(try Self.open(path))
        self.path = path
    }

    deinit {
        close(descriptor.withLock { $0 })
    }

    private static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AuditLogError(message: "cannot open audit log \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// Opens `path` again, for log rotation: after `logrotate` (or anyone)
    /// moved the file away, lines go to a new file at `path`, not on into
    /// the moved one. The agent calls it on every reload (`SIGHUP`,
    /// `RELOAD`). On failure the old file stays in use.
    package func reopen() throws {
        let fresh = try Self.open(path)
        let old = descriptor.withLock { current in
            defer { current = fresh }
            return current
        }
        close(old)
    }

    /// `time=... pid=... uid=... gid=... verb=GET identity=x result=ok fingerprint=1a2b3c4d`
    package func record(peer: PeerCredentials, verb: String, identity: IdentityName?, result: String, token: Secret? = nil) {
        var line = "time=\(Self.timestamp()) pid=\(peer.pid) uid=\(peer.uid) gid=\(peer.gid) verb=\(verb)"
        line += " identity=\(identity?.rawValue ?? "-") result=\(result)"
        if let token { line += " fingerprint=\(Self.fingerprint(token))" }
        line += "\n"
        descriptor.withLock { descriptor in
            _ = line.withCString { write(descriptor, $0, strlen($0)) }
        }
    }

    /// First 8 hex digits of the SHA-256 of the token: enough to correlate
    /// a token seen elsewhere, useless to forge one.
    package static func fingerprint(_ token: Secret) -> String {
        SHA256.hash(data: Data(token.exposedValue.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    private static func timestamp() -> String {
        Date().formatted(timeFormat)
    }
}

package struct AuditLogError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
