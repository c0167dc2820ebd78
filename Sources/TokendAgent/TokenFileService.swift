import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TokendConfig
import TokendCore
import TokendCache
import TokendEngine

#if canImport(Glibc)
import Glibc
#endif

/// Writes configured identities' access tokens to files, for programs that
/// can only read a file (what a credential-rotating cron job used to do).
///
/// Checks once a second (while any file is configured) and writes a file
/// only when its token changed:
/// into a temporary file in the same directory with the configured mode and
/// owner, synced, then renamed over the old one, so a reader never sees a
/// partial token. A file is also rewritten when the configuration moves it
/// or changes its mode or owner, or when someone deleted or altered it; the
/// file of an identity the configuration drops is deleted.
final class TokenFileService: Service, Sendable {
    private struct Written {
        var token: Secret
        var sink: TokenFileConfiguration
    }

    private let sinks: Mutex<[IdentityName: TokenFileConfiguration]>
    private let written = Mutex<[IdentityName: Written]>([:])
    /// One writer at a time: the once-a-second loop and a reload's update
    /// must not interleave (an old path rewritten after its removal).
    private let writing = Mutex(())
    private let cache: TokenCache
    private let logger: Logger
    /// Signalled when a reload configures token files.
    private let configured = WakeSignal()

    init(identities: [IdentityConfiguration], cache: TokenCache, logger: Logger) {
        sinks = Mutex(Self.sinks(of: identities))
        self.cache = cache
        self.logger = logger
    }

    /// New sinks after a reload.
    func update(_ identities: [IdentityConfiguration]) {
        writing.withLock { _ in apply(identities) }
    }

    private func apply(_ identities: [IdentityConfiguration]) {
        let new = Self.sinks(of: identities)
        sinks.withLock { $0 = new }
        if !new.isEmpty { configured.signal() }
        // Files the configuration no longer names (identity dropped, or the
        // file moved) are removed; the new ones are written right away.
        let stale = written.withLock { written -> [(IdentityName, String)] in
            let gone = written.filter { name, file in new[name]?.path != file.sink.path }
            for name in gone.keys { written[name] = nil }
            return gone.map { ($0.key, $0.value.sink.path) }
        }
        for (name, path) in stale {
            if unlink(path) == 0 || errno == ENOENT {
                logger.info("token file removed", metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(path)"])
            } else {
                logger.error(
                    "cannot remove token file",
                    metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(path)", "tokend.error": "\(String(cString: strerror(errno)))"])
            }
        }
        writeAll()
    }

    private static func sinks(of identities: [IdentityConfiguration]) -> [IdentityName: TokenFileConfiguration] {
        Dictionary(identities.compactMap { identity in identity.tokenFile.map { (identity.name, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // No token file configured: nothing to check, so no wake-up
                // a second (idle CPU stays at zero) until a reload names one.
                if self.sinks.withLock({ $0.isEmpty }) {
                    await self.configured.wait()
                    continue
                }
                self.writeChanged()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func writeChanged() {
        writing.withLock { _ in writeAll() }
    }

    private func writeAll() {
        let now = Date()
        for (name, sink) in sinks.withLock({ $0 }) {
            guard let token = cache.snapshot(name)?.servableToken(at: now) else { continue }
            let previous = written.withLock { $0[name] }
            if let previous, previous.token == token, previous.sink == sink, Self.isIntact(sink) { continue }
            do {
                try Self.write(token, to: sink)
                written.withLock { $0[name] = Written(token: token, sink: sink) }
                logger.debug("token file written", metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(sink.path)"])
            } catch {
                logger.error(
                    "cannot write token file", metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(sink.path)", "tokend.error": "\(error)"])
            }
        }
    }

    /// The file is still as written: present, a regular file, with the
    /// configured mode and owner. (One `stat` per file per second.)
    static func isIntact(_ sink: TokenFileConfiguration) -> Bool {
        var info = stat()
        guard lstat(sink.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
        guard info.st_mode & 0o7777 == mode_t(sink.mode) else { return false }
        if let uid = sink.uid, info.st_uid != uid { return false }
        if let gid = sink.gid, info.st_gid != gid { return false }
        return true
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func write(_ token: Secret, to sink: TokenFileConfiguration) throws {
        let directory = (sink.path as NSString).deletingLastPathComponent
        let temporary = "\(directory)/.\((sink.path as NSString).lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o600))
        guard fd >= 0 else { throw Failure(description: "open \(temporary): \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temporary) }
        }
        let bytes = Array((token.exposedValue + "\n").utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw Failure(description: "write \(temporary): \(String(cString: strerror(errno)))")
        }
        if sink.uid != nil || sink.gid != nil {
            guard fchown(fd, sink.uid ?? UInt32.max, sink.gid ?? UInt32.max) == 0 else {
                throw Failure(description: "chown \(temporary): \(String(cString: strerror(errno)))")
            }
        }
        guard fchmod(fd, mode_t(sink.mode)) == 0, fsync(fd) == 0 else {
            throw Failure(description: "chmod/fsync \(temporary): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, sink.path) == 0 else {
            throw Failure(description: "rename to \(sink.path): \(String(cString: strerror(errno)))")
        }
        ok = true
        // The rename is durable once the directory is synced.
        let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}
