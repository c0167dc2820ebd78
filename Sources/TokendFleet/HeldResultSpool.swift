import Foundation
import Logging
import TokendCore
import TokendVault

/// Refresh results the fleet store could not take yet, kept in a private
/// directory on this host (one file per identity), every token in them
/// sealed under the fleet's data key exactly as in the store. A restart
/// while the database is down therefore loses no refresh token the provider
/// already rotated, and the disk holds no token in the clear.
package final class HeldResultSpool: HeldResults {
    package let directory: String
    private let vault: PostgresVault
    private let logger: Logger
    /// Far above a real result (three sealed tokens and a few fields).
    package static let maximumFileSize = 256 * 1024

    /// Uses (creating it, mode 0700) `directory`, which must be private.
    package init(directory: String, vault: PostgresVault, logger: Logger = Logger(label: "tokend.fleet.held")) throws {
        try FilePermissions.createPrivateDirectory(directory)
        try FilePermissions.requirePrivate(directory, what: "held-results directory")
        self.directory = directory
        self.vault = vault
        self.logger = logger
    }

    /// What a file holds: the result's fields, its tokens sealed.
    private struct Record: Codable {
        var name: String
        var generation: Int64
        var tokenType: String
        var issuedAt: Double
        var expiresAt: Double
        var accessToken: Data
        var refreshToken: Data?
        var sessionID: Data?
    }

    private func path(_ name: IdentityName) -> String { "\(directory)/\(name.rawValue).held" }

    package func keep(_ result: RefreshCommit) throws {
        let ring = vault.keyRing.withLock { $0 }
        let name = result.name
        let record = Record(
            name: name.rawValue, generation: result.expectedGeneration, tokenType: result.tokenType,
            issuedAt: result.issuedAt.timeIntervalSince1970, expiresAt: result.expiresAt.timeIntervalSince1970,
            accessToken: try ring.seal(result.accessToken, identity: name, kind: .accessToken),
            refreshToken: try result.newRefreshToken.map { try ring.seal($0, identity: name, kind: .refreshToken) },
            sessionID: try result.newSessionID.map { try ring.seal($0, identity: name, kind: .sessionID) })
        let bytes = Array(try JSONEncoder().encode(record))
        // Written beside and renamed over: a crash leaves the old file or
        // the new one, never half of one.
        let temporary = "\(directory)/.\(name.rawValue).\(getpid()).tmp"
        unlink(temporary)
        try FilePermissions.createPrivateFile(temporary, contents: bytes)
        guard rename(temporary, path(name)) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw VaultError(.storage, "cannot keep a held result in \(directory): \(reason)")
        }
        try FilePermissions.syncDirectory(containing: path(name))
    }

    package func drop(_ name: IdentityName) {
        if unlink(path(name)) != 0, errno != ENOENT {
            logger.error(
                "cannot remove a held result that is no longer needed",
                metadata: ["tokend.identity": "\(name)", "tokend.error": "\(String(cString: strerror(errno)))"])
        }
    }

    package func load() -> [RefreshCommit] {
        let ring = vault.keyRing.withLock { $0 }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var results: [RefreshCommit] = []
        for file in files.sorted() where file.hasSuffix(".held") && !file.hasPrefix(".") {
            // Anything wrong is reported by file name and left in place for
            // the operator: it may be the only copy of a rotated token.
            do {
                results.append(try read(file, ring: ring))
            } catch {
                logger.error(
                    "a held refresh result cannot be read; left in place",
                    metadata: ["tokend.fleet.held_file": "\(directory)/\(file)", "tokend.error": "\(error)"])
            }
        }
        return results
    }

    private func read(_ file: String, ring: KeyRing) throws -> RefreshCommit {
        let path = "\(directory)/\(file)"
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard attributes[.type] as? FileAttributeType == .typeRegular else { throw VaultError(.corrupt, "not a regular file") }
        guard let size = attributes[.size] as? Int, size <= Self.maximumFileSize else { throw VaultError(.corrupt, "too large") }
        let record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        guard let name = IdentityName(record.name), file == "\(record.name).held" else {
            throw VaultError(.corrupt, "the file's name and the identity in it differ")
        }
        guard record.generation >= 1, record.issuedAt.isFinite, record.expiresAt.isFinite,
            ProviderReplyGate.isTokenType(record.tokenType)
        else { throw VaultError(.corrupt, "a field is out of range") }
        return RefreshCommit(
            name: name, expectedGeneration: record.generation,
            accessToken: try ring.open(record.accessToken, identity: name, kind: .accessToken),
            tokenType: record.tokenType, issuedAt: Date(timeIntervalSince1970: record.issuedAt),
            expiresAt: Date(timeIntervalSince1970: record.expiresAt),
            newRefreshToken: try record.refreshToken.map { try ring.open($0, identity: name, kind: .refreshToken) },
            newSessionID: try record.sessionID.map { try ring.open($0, identity: name, kind: .sessionID) })
    }
}
