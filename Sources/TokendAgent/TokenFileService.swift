import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TokendConfig
import TokendCore
import TokendEngine

#if canImport(Glibc)
import Glibc
#endif

/// Writes configured identities' access tokens to files, for programs that
/// can only read a file (what a credential-rotating cron job used to do).
///
/// Checks once a second and writes a file only when its token changed:
/// into a temporary file in the same directory with the configured mode and
/// owner, synced, then renamed over the old one, so a reader never sees a
/// partial token.
final class TokenFileService: Service, Sendable {
    private let sinks: Mutex<[IdentityName: TokenFileConfiguration]>
    private let written = Mutex<[IdentityName: Secret]>([:])
    private let cache: TokenCache
    private let logger: Logger

    init(identities: [IdentityConfiguration], cache: TokenCache, logger: Logger) {
        sinks = Mutex(Self.sinks(of: identities))
        self.cache = cache
        self.logger = logger
    }

    /// New sinks after a reload.
    func update(_ identities: [IdentityConfiguration]) {
        sinks.withLock { $0 = Self.sinks(of: identities) }
    }

    private static func sinks(of identities: [IdentityConfiguration]) -> [IdentityName: TokenFileConfiguration] {
        Dictionary(identities.compactMap { identity in identity.tokenFile.map { (identity.name, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                self.writeChanged()
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func writeChanged() {
        let now = Date()
        for (name, sink) in sinks.withLock({ $0 }) {
            guard let token = cache.snapshot(name)?.servableToken(at: now),
                written.withLock({ $0[name] }) != token
            else { continue }
            do {
                try Self.write(token, to: sink)
                written.withLock { $0[name] = token }
                logger.debug("token file written", metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(sink.path)"])
            } catch {
                logger.error(
                    "cannot write token file", metadata: ["tokend.identity": "\(name)", "tokend.token_file": "\(sink.path)", "tokend.error": "\(error)"])
            }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func write(_ token: Secret, to sink: TokenFileConfiguration) throws {
        let directory = (sink.path as NSString).deletingLastPathComponent
        let temporary = "\(directory)/.\((sink.path as NSString).lastPathComponent).\(getpid()).tmp"
        unlink(temporary)
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
    }
}
