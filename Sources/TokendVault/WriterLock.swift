import Foundation
import Synchronization
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on `<vault>.lock`, held by the vault's one writer.
///
/// Why: the writer keeps the unwrapped data keys in memory. A second writer
/// (say, `vault rotate-dek` while the agent runs) could retire a key term the
/// other is still sealing with. The lock file is separate from the database
/// file because closing any descriptor of the database would drop SQLite's
/// own POSIX locks. The kernel releases the lock when the process dies, so a
/// `kill -9` leaves nothing to clean up.
package final class WriterLock: Sendable {
    package let path: String
    private let descriptor: Mutex<Int32?>

    convenience init(vaultPath: String) throws {
        try self.init(
            lockFile: vaultPath + ".lock",
            busy: "vault \(vaultPath) is in use by another process (the running agent?); "
                + "stop it before changing the vault from the command line")
    }

    /// Takes the lock on `lockFile` (created, mode 0600), or throws
    /// `.locked` with `busy` when another process holds it.
    package init(lockFile: String, busy: String) throws {
        path = lockFile
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw VaultError(.storage, "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        let busyMessage = busy
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            close(fd)
            if busy { throw VaultError(.locked, busyMessage) }
            throw VaultError(.storage, "cannot lock \(path): \(reason)")
        }
        descriptor = Mutex(fd)
    }

    /// Releases the lock now rather than when the last reference goes.
    package func release() {
        descriptor.withLock { fd in
            guard let open = fd else { return }
            flock(open, LOCK_UN)
            close(open)
            fd = nil
        }
    }

    deinit {
        release()
    }
}
