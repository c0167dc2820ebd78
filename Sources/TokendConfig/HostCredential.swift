import Foundation
import TOMLKit
import TokendCore

/// One `[hosts."<host>"]` section: which identity answers a credential
/// helper (git, docker, Bazel) that asks for `host`.
///
/// ```toml
/// [hosts."registry.example.com"]
/// identity = "ci-registry"
/// username = "oauth2accesstoken"   # default "oauth2"
/// ```
package struct HostCredential: Sendable, Hashable {
    package static let defaultUsername = "oauth2"

    /// Lowercased `host` or `host:port`.
    package var host: String
    package var identity: IdentityName
    /// The user name helpers answer next to the token (git, docker).
    package var username: String = defaultUsername
}

/// What the client commands read from the configuration file: the socket
/// path and the host table. Loaded without opening any secret file, so a
/// user who may not read the agent's secrets can still run a helper.
package struct ClientConfiguration: Sendable {
    package var socketPath: String
    package var hosts: [HostCredential]

    /// The mapping for a URL (`https://h:443/p`), a `host:port` or a bare
    /// host: an exact `host:port` entry first, then the host alone.
    package func host(for target: String) -> HostCredential? {
        guard let (host, port) = HostKey.split(target) else { return nil }
        if let port, let exact = hosts.first(where: { $0.host == "\(host):\(port)" }) { return exact }
        return hosts.first { $0.host == host }
    }
}

/// Normalizes what helpers are handed into a lowercased host and port.
package enum HostKey {
    /// `(host, port)` from a URL, `host:port` or host; nil for anything
    /// that is not a plausible host (empty, spaces, control bytes, too long).
    package static func split(_ target: String) -> (String, String?)? {
        var text = Substring(target)
        if let scheme = text.range(of: "://") { text = text[scheme.upperBound...] }
        if let slash = text.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { text = text[..<slash] }
        if let at = text.lastIndex(of: "@") { text = text[text.index(after: at)...] }
        var host = text
        var port: Substring? = nil
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[...close]
            let rest = text[text.index(after: close)...]
            if rest.hasPrefix(":") { port = rest.dropFirst() }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, host.utf8.count <= 253,
            host.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F })
        else { return nil }
        if let port, port.isEmpty || port.count > 5 || !port.allSatisfy(\.isNumber) { return nil }
        return (host.lowercased(), port.map(String.init))
    }
}

enum HostsSection {
    static func parse(_ reader: TableReader) -> [HostCredential] {
        var hosts: [HostCredential] = []
        for key in reader.table.keys.sorted() {
            guard let table = reader.table(key) else { continue }
            let section = TableReader(table, path: "\(reader.path).\"\(key)\"", report: reader.report)
            defer { section.rejectUnknownKeys() }
            let identityText = section.string("identity", required: true)
            let username = section.string("username")
            guard let (host, port) = HostKey.split(key), !key.contains("/") else {
                section.report.add(key: section.path, "is not a host or host:port")
                continue
            }
            guard let identityText else { continue }
            guard let identity = IdentityName(identityText) else {
                section.problem("identity", "is not a valid identity name")
                continue
            }
            if let username, username.isEmpty || username.contains(where: { $0.isNewline || $0 == "\0" }) || username.utf8.count > 256 {
                section.problem("username", "must be one line of at most 256 bytes")
                continue
            }
            var entry = HostCredential(host: port.map { "\(host):\($0)" } ?? host, identity: identity)
            if let username { entry.username = username }
            hosts.append(entry)
        }
        return hosts
    }
}

extension ConfigLoader {
    /// The socket path and host table of `path`, reading nothing else: no
    /// secret files, no provider checks (the agent validates those). A
    /// missing file, when none was asked for, gives the defaults.
    package static func loadClient(path: String, explicit: Bool) throws(ConfigError) -> ClientConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            if !explicit && !FileManager.default.fileExists(atPath: path) {
                return ClientConfiguration(socketPath: SocketSettings.defaultPath, hosts: [])
            }
            let reason = FileManager.default.fileExists(atPath: path) ? "is not readable" : "does not exist"
            throw ConfigError([.init(file: path, key: "", message: "configuration file \(reason)")])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: String(decoding: data, as: UTF8.self))
        } catch {
            throw ConfigError([.init(file: path, key: "", message: "TOML syntax error")])
        }
        let report = ProblemReport(file: path)
        let top = TableReader(root, path: "", report: report)
        var socketPath = SocketSettings.defaultPath
        if let socket = top.table("socket"), let configured = TableReader(socket, path: "socket", report: report).string("path") {
            socketPath = configured
        }
        let hosts = top.table("hosts").map { HostsSection.parse(TableReader($0, path: "hosts", report: report)) } ?? []
        guard report.problems.isEmpty else { throw ConfigError(report.problems) }
        return ClientConfiguration(socketPath: socketPath, hosts: hosts)
    }
}
