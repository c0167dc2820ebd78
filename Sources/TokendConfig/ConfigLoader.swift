import Foundation
import TOMLKit
import Logging
import TokendCore
import TokendProviders

/// Reads and validates `tokend.toml`. The only code that knows the format.
///
/// ```toml
/// [vault]
/// path = "/var/lib/tokend/vault.db"
/// key_file = "/etc/tokend/vault.key"        # or key_credential = "vault-key"
///
/// [providers.corp]
/// kind = "oauth2"
/// token_endpoint = "https://login.example.com/oauth2/token"
/// client_id = "tokend"
/// client_secret_file = "/etc/tokend/corp.secret"
/// ca_file = "/etc/tokend/corp-ca.pem"          # optional: a private CA
///
/// [providers.transmit]
/// kind = "transmit"
/// region = "eu"
/// client_id = "..."
/// client_secret_credential = "transmit-secret"
/// ```
package enum ConfigLoader {
    /// Loads `path`, reporting every problem at once.
    ///
    /// - Throws: ``ConfigError``.
    package static func load(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> TokendConfiguration {
        let report = ProblemReport(file: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "is not readable" : "does not exist"
            throw ConfigError([.init(file: path, key: "", message: "configuration file \(reason)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError([.init(file: path, key: "", message: "is not UTF-8 text")])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError([.init(
                file: "\(path):\(error.source.begin.line):\(error.source.begin.column)", key: "",
                message: "TOML syntax error: \(error.description)")])
        } catch {
            throw ConfigError([.init(file: path, key: "", message: "cannot parse: \(error)")])
        }
        let configuration = parse(root, file: path, report: report, environment: environment)
        guard report.problems.isEmpty else { throw ConfigError(report.problems) }
        return configuration
    }

    /// The path to use: `--config`, else `$TOKEND_CONFIG`, else the default.
    package static func resolvePath(
        _ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        option ?? environment[TokendConfiguration.pathEnvironmentVariable] ?? TokendConfiguration.defaultPath
    }

    private static func parse(
        _ root: TOMLTable, file: String, report: ProblemReport, environment: [String: String]
    ) -> TokendConfiguration {
        let top = TableReader(root, path: "", report: report)
        var vault = VaultConfiguration()
        if let table = top.table("vault") {
            vault = VaultSection.parse(TableReader(table, path: "vault", report: report))
        }
        var socket = SocketSettings()
        if let table = top.table("socket") {
            socket = parseSocket(TableReader(table, path: "socket", report: report))
        }
        var admins = AdminConfiguration()
        if let table = top.table("admins") {
            let reader = TableReader(table, path: "admins", report: report)
            if let uids = reader.strings("groups") { admins.groups = uids }
            if let values = reader.integers("uids", range: 0...Int(UInt32.max - 1)) { admins.uids = values.map { UInt32($0) } }
            reader.rejectUnknownKeys()
        }
        var auditLog: String? = nil
        if let table = top.table("audit") {
            let reader = TableReader(table, path: "audit", report: report)
            auditLog = reader.string("path", required: true)
            reader.rejectUnknownKeys()
        }
        var metrics: MetricsListener? = nil
        if let table = top.table("metrics") {
            metrics = parseMetrics(TableReader(table, path: "metrics", report: report))
        }
        var providers: [ProviderConfiguration] = []
        var engine = EngineSettings()
        if let table = top.table("providers") {
            let reader = TableReader(table, path: "providers", report: report)
            for name in table.keys.sorted() {
                guard let section = reader.table(name) else { continue }
                let sectionReader = TableReader(section, path: "providers.\(name)", report: report)
                if let limit = sectionReader.number("rate_limit", range: 0.01...100_000, unit: " per second") { engine.providerRates[name] = limit }
                if let provider = parseProvider(name: name, sectionReader, environment: environment) {
                    providers.append(provider)
                }
            }
        }
        var identities: [IdentityConfiguration] = []
        if let table = top.table("identities") {
            let reader = TableReader(table, path: "identities", report: report)
            for name in table.keys.sorted() {
                guard let section = reader.table(name) else { continue }
                let identityReader = TableReader(section, path: "identities.\(name)", report: report)
                if let identity = IdentitySection.parse(
                    name: name, identityReader, providers: providers, environment: environment)
                {
                    identities.append(identity)
                }
            }
        }
        if let table = top.table("refresh") {
            let reader = TableReader(table, path: "refresh", report: report)
            if let value = reader.number("refresh_at", range: 0.05...0.95) { engine.policy.refreshAt = value }
            if let value = reader.number("jitter", range: 0...0.5) { engine.policy.jitter = value }
            if let value = reader.seconds("safety_margin", range: 0...86_400) { engine.policy.safetyMargin = value }
            if let value = reader.seconds("default_lifetime", range: 1...31_536_000) { engine.policy.defaultLifetime = value }
            if let value = reader.int("max_concurrent", range: 1...1024) { engine.maxConcurrentRefreshes = value }
            if let value = reader.number("rate_limit", range: 0.01...100_000, unit: " per second") {
                engine.providerRate = value
                // A burst of one second's worth, and never less than one.
                engine.providerBurst = max(1, value)
            }
            if let value = reader.seconds("min_interval", range: 0.1...3600) {
                engine.minimumRefreshInterval = .milliseconds(Int64((value * 1000).rounded()))
            }
            reader.rejectUnknownKeys()
        }
        var logging = LoggingConfiguration()
        if let table = top.table("logging") {
            let reader = TableReader(table, path: "logging", report: report)
            if let level = reader.string("level") {
                if let parsed = Logger.Level(rawValue: level) { logging.level = parsed } else {
                    reader.problem("level", "must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            if let format = reader.string("format") {
                if let parsed = LogFormat(rawValue: format) { logging.format = parsed } else {
                    reader.problem("format", "must be logfmt or json")
                }
            }
            reader.rejectUnknownKeys()
        }
        let hosts = top.table("hosts").map { HostsSection.parse(TableReader($0, path: "hosts", report: report)) } ?? []
        top.rejectUnknownKeys()
        var configuration = TokendConfiguration(
            file: file, vault: vault, socket: socket, admins: admins, auditLog: auditLog, metrics: metrics,
            providers: providers)
        configuration.identities = identities
        configuration.logging = logging
        configuration.engine = engine
        configuration.hosts = hosts
        return configuration
    }

    private static func parseMetrics(_ reader: TableReader) -> MetricsListener? {
        defer { reader.rejectUnknownKeys() }
        let listen = reader.string("listen")
        let socket = reader.string("socket")
        switch (listen, socket) {
        case (nil, let path?):
            return .unix(path)
        case (let address?, nil):
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
                (1...65535).contains(port)
            else {
                reader.problem("listen", "must be host:port, such as \"127.0.0.1:9464\"")
                return nil
            }
            let host = address[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard host == "localhost" || host == "::1" || host.hasPrefix("127.") else {
                reader.problem("listen", "must be a loopback address (127.0.0.1, ::1); metrics have no authentication")
                return nil
            }
            return .tcp(host: host, port: port)
        case (_?, _?):
            reader.problem("socket", "give either listen or socket, not both")
        case (nil, nil):
            reader.problem("listen", "is required (or socket = \"/run/tokend/metrics.sock\")")
        }
        return nil
    }

    private static func parseSocket(_ reader: TableReader) -> SocketSettings {
        var socket = SocketSettings()
        if let path = reader.string("path", required: false) {
            if path.utf8.count >= 108 { reader.problem("path", "is longer than a Unix socket path may be (107 bytes)") }
            socket.path = path
        }
        if let mode = reader.mode("mode") { socket.mode = mode }
        socket.group = reader.string("group")
        if let value = reader.int("max_connections", range: 1...100_000) { socket.maxConnections = value }
        if let value = reader.int("max_connections_per_uid", range: 1...100_000) { socket.maxConnectionsPerUID = value }
        if let value = reader.seconds("idle_timeout", range: 1...86_400) { socket.idleTimeout = .milliseconds(Int64((value * 1000).rounded())) }
        if let value = reader.seconds("refresh_wait", range: 0.1...300) { socket.refreshWait = .milliseconds(Int64((value * 1000).rounded())) }
        if let value = reader.int("busy_poll_us", range: 0...200) { socket.busyPoll = .microseconds(value) }
        reader.rejectUnknownKeys()
        return socket
    }

    private static func parseProvider(
        name: String, _ reader: TableReader, environment: [String: String]
    ) -> ProviderConfiguration? {
        // Keys are only checked for typos once the kind is known: a section
        // with a bad name or kind gets that one problem, not a list of
        // "unknown key" for everything else in it.
        guard ProviderName.isValid(name) else {
            reader.report.add(key: reader.path, "provider names use letters, digits, '-', '_' and '.'")
            return nil
        }
        guard let kind = reader.string("kind", required: true) else { return nil }
        let secret = clientSecret(reader, environment: environment)
        let timeout = reader.seconds("timeout", range: 0.1...300) ?? 10
        let insecure = reader.bool("allow_insecure_http") ?? false
        let lifetime = reader.seconds("default_lifetime", range: 1...31_536_000) ?? 3600
        let resource = reader.string("resource")
        let trust = caFile(reader)
        switch kind {
        case "oauth2":
            let endpoint = reader.string("token_endpoint", required: true)
            let clientID = reader.string("client_id")
            let auth = reader.choice("client_auth", as: ClientAuthMethod.self)
                ?? (secret == nil ? .none : .clientSecretBasic)
            let (scope, audience) = (reader.string("scope"), reader.string("audience"))
            reader.rejectUnknownKeys()
            guard let endpoint else { return nil }
            let settings = OAuth2Settings(
                name: name, tokenEndpoint: endpoint, clientID: clientID, clientSecret: secret, clientAuth: auth,
                scope: scope, resource: resource, audience: audience,
                defaultLifetime: lifetime, requestTimeout: .milliseconds(Int64(timeout * 1000)),
                allowInsecureHTTP: insecure, trust: trust)
            do {
                _ = try settings.validatedTokenURL()
            } catch {
                reader.report.add(key: reader.path, "\(error)")
                return nil
            }
            return .oauth2(settings)
        case "transmit":
            let region = reader.choice("region", as: TransmitRegion.self)
            let explicit = reader.string("base_url")
            let clientID = reader.string("client_id", required: true)
            reader.rejectUnknownKeys()
            if secret == nil {
                reader.problem("client_secret_file", "a transmit provider needs client_secret_file or client_secret_credential")
            }
            let baseURL: String
            switch (region, explicit) {
            case (let region?, nil): baseURL = region.baseURL
            case (nil, let url?): baseURL = url
            case (_?, _?):
                reader.problem("base_url", "give either region or base_url, not both")
                return nil
            case (nil, nil):
                reader.problem("region", "is required (us, eu, ca, au, sandbox), or give base_url")
                return nil
            }
            guard let clientID, let secret else { return nil }
            let settings = TransmitSettings(
                name: name, baseURL: baseURL, clientID: clientID, clientSecret: secret, resource: resource,
                requestTimeout: .milliseconds(Int64(timeout * 1000)), defaultLifetime: lifetime, allowInsecureHTTP: insecure,
                trust: trust)
            do {
                _ = try settings.validatedBaseURL()
            } catch {
                reader.report.add(key: reader.path, "\(error)")
                return nil
            }
            return .transmit(settings)
        default:
            reader.problem("kind", "must be \"oauth2\" or \"transmit\", not \"\(kind)\"")
            return nil
        }
    }
}

/// Provider names appear in logs, metrics labels and `STATUS`; keep them plain.
enum ProviderName {
    static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64
            && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_.".unicodeScalars.contains($0) }
    }
}
