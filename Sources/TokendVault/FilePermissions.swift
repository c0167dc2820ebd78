import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File-system checks and creation helpers for files that hold or guard
/// secrets: the key file and the vault file.
package enum FilePermissions {
    /// The permission bits of `path`, or nil if it does not exist.
    package static func mode(of path: String) throws -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            throw VaultError(.missingFile, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        return info.st_mode & 0o7777
    }

    /// Throws unless `path` grants nothing to group and others.
    ///
    /// - Parameter what: how the message names the file ("key file").
    package static func requirePrivate(_ path: String, what: String) throws {
        guard let mode = try mode(of: path) else { return }
        if let problem = PrivateFile.problem(path: path, mode: UInt32(mode), what: what) {
            throw VaultError(.insecurePermissions, problem)
        }
    }

    /// Creates `path` exclusively with mode 0600 (whatever the umask) and
    /// writes `bytes`, synced to disk. Fails if the file exists.
    package static func createPrivateFile(_ path: String, contents bytes: [UInt8]) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST {
                throw VaultError(.alreadyExists, "\(path) already exists; nothing was changed")
            }
            throw VaultError(.storage, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // The umask may have removed bits we asked for but never adds any;
        // fchmod makes the mode exactly 0600 either way.
        fchmod(fd, 0o600)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBufferPointer { buffer in
                write(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                unlink(path)
                throw VaultError(.storage, "cannot write \(path): \(reason)")
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            throw VaultError(.storage, "cannot sync \(path): \(String(cString: strerror(errno)))")
        }
        // The file's data is on disk; its name is not until the directory
        // is synced too. A new key file is relied on at once (rotate-kek
        // commits right after), so a power loss must not lose its name.
        try syncDirectory(containing: path)
    }

    /// fsync(2) of the directory holding `path`, so a new entry in it is durable.
    package static func syncDirectory(containing path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw VaultError(.storage, "cannot open directory of \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            throw VaultError(.storage, "cannot sync the directory of \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates `directory` (and parents) with mode 0700 if it is missing.
    package static func createPrivateDirectory(_ directory: String) throws {
        guard !FileManager.default.fileExists(atPath: directory) else { return }
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw VaultError(.storage, "cannot create directory \(directory): \(error.localizedDescription)")
        }
    }

}
