import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A token file a client command writes for a program it serves: created
/// with the given mode (0600 by default) whatever the umask, written in full
/// to a temporary file in the same directory, synced and renamed over the
/// old one, so a reader sees the old token or the new one, never a mix.
struct PrivateTokenFile {
    let path: String
    var mode: mode_t = 0o600

    func write(_ token: String) throws(HelperFailure) {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = "\(directory.isEmpty ? "." : directory)/.\((path as NSString).lastPathComponent).\(getpid()).tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
        guard fd >= 0 else { throw failure("cannot create", temporary) }
        var written = false
        defer {
            close(fd)
            if !written { unlink(temporary) }
        }
        let bytes = Array((token + "\n").utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else { throw failure("cannot write", temporary) }
        guard fchmod(fd, mode) == 0, fsync(fd) == 0 else { throw failure("cannot chmod or sync", temporary) }
        guard rename(temporary, path) == 0 else { throw failure("cannot rename over", path) }
        written = true
    }

    func remove() {
        unlink(path)
    }

    private func failure(_ what: String, _ file: String) -> HelperFailure {
        HelperFailure("\(what) \(file): \(String(cString: strerror(errno)))", code: CLIExitCode.storage)
    }
}
