import Foundation
import Testing
import TokendCore
import TokendProviders
@testable import TokendConfig

@Suite("Configuration file: valid files load, broken ones say exactly what is wrong")
final class ConfigLoaderTests {
    let directory: String
    var file: String { directory + "/tokend.toml" }
    var secretFile: String { directory + "/client.secret" }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: directory + "/client.secret", contents: Data("top-secret\n".utf8), attributes: [.posixPermissions: 0o600])
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func load(_ text: String, environment: [String: String] = [:]) throws(ConfigError) -> TokendConfiguration {
        _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
        return try ConfigLoader.load(path: file, environment: environment)
    }

    func problems(_ text: String) -> [String] {
        do {
            _ = try load(text)
            return []
        } catch {
            return error.problems.map { "\($0.key): \($0.message)" }
        }
    }

    @Test func aCompleteFileLoads() throws {
        let configuration = try load("""
            [vault]
            path = "\(directory)/vault.db"
            key_credential = "vault-key"

            [providers.corp]
            kind = "oauth2"
            token_endpoint = "https://login.example.com/oauth2/token"
            client_id = "tokend"
            client_secret_file = "\(secretFile)"
            client_auth = "client_secret_post"
            scope = "read write"
            timeout = 2.5

            [providers.transmit-eu]
            kind = "transmit"
            region = "eu"
            client_id = "abc"
            client_secret_file = "\(secretFile)"
            """)
        #expect(configuration.vault.path == directory + "/vault.db")
        #expect(configuration.vault.keySource == .credential("vault-key"))
        #expect(configuration.providers.map(\.name) == ["corp", "transmit-eu"])
        guard case .oauth2(let corp) = configuration.provider(named: "corp"),
            case .transmit(let transmit) = configuration.provider(named: "transmit-eu")
        else {
            Issue.record("wrong provider kinds")
            return
        }
        #expect(corp.clientSecret?.exposedValue == "top-secret", "the final newline is not part of the secret")
        #expect(corp.clientAuth == .clientSecretPost)
        #expect(corp.requestTimeout == .milliseconds(2500))
        #expect(transmit.baseURL == "https://api.eu.transmitsecurity.io")
    }

    static let provider = "[providers.p]\nkind = \"oauth2\"\ntoken_endpoint = \"https://x/t\"\nclient_id = \"c\"\n"

    @Test func identitiesAreDeclaredWithTheirPolicyAndTokenFile() throws {
        let configuration = try load(Self.provider + """
            [identities.billing]
            provider = "p"
            allow = ["uid:1001", "group:billing"]
            refresh_at = 0.5
            token_file = "/run/tokend/billing.token"
            token_file_mode = "0640"
            token_file_owner = "root:root"

            [identities.user-7]
            provider = "p"
            refresh_token_file = "\(secretFile)"

            [logging]
            level = "debug"
            format = "json"
            """)
        #expect(configuration.identities.map(\.name.rawValue) == ["billing", "user-7"])
        let billing = configuration.identities[0]
        #expect(billing.grant == .clientCredentials)
        #expect(billing.allow == ["uid:1001", "group:billing"])
        #expect(billing.refreshAt == 0.5)
        #expect(billing.tokenFile == TokenFileConfiguration(path: "/run/tokend/billing.token", mode: 0o640, uid: 0, gid: 0))
        #expect(configuration.identities[1].grant == .refreshToken)
        #expect(configuration.identities[1].refreshToken?.exposedValue == "top-secret")
        #expect(configuration.logging == LoggingConfiguration(level: .debug, format: .json))
    }

    @Test(arguments: [
        ("[identities.x]\nprovider = \"nope\"", ["identities.x.provider: no provider named nope is configured"]),
        ("[identities.x]\nprovider = \"p\"\ngrant = \"refresh_token\"",
         ["identities.x.refresh_token_file: grant refresh_token needs the first refresh token in refresh_token_file"]),
        ("[identities.x]\nprovider = \"p\"\ngrant = \"session\"", ["identities.x.session_id_file: grant session needs session_id_file"]),
        ("[identities.x]\nprovider = \"p\"\nallow = [\"everyone\"]",
         ["identities.x.allow: allow rule \"everyone\" is not uid:N, user:NAME, gid:N, group:NAME or unit:NAME.service"]),
        ("[identities.x]\nprovider = \"p\"\ntoken_file = \"relative.token\"", ["identities.x.token_file: must be an absolute path"]),
        ("[identities.x]\nprovider = \"p\"\ntoken_file = \"/t\"\ntoken_file_owner = \"no-such-user-here\"",
         ["identities.x.token_file_owner: no user named no-such-user-here"]),
        ("[identities.\"-x\"]\nprovider = \"p\"", ["identities.-x: is not a valid identity name ([A-Za-z0-9][A-Za-z0-9._:@/-]{0,127})"]),
        ("[identities.x]\nprovider = \"p\"\ncolour = 1", ["identities.x.colour: unknown key"]),
        ("[logging]\nlevel = \"loud\"", ["logging.level: must be one of trace, debug, info, notice, warning, error, critical"]),
    ])
    func brokenIdentitiesAreReported(text: String, expected: [String]) {
        #expect(problems(Self.provider + text) == expected)
    }

    @Test(arguments: [
        ("ca_file = \"/nonexistent/ca.pem\"",
         ["providers.p.ca_file: CA file /nonexistent/ca.pem cannot be read (missing, or not readable by this user)"]),
        ("ca_file = \"ca.pem\"", ["providers.p.ca_file: CA file ca.pem must be an absolute path"]),
        ("ca_file = 1", ["providers.p.ca_file: must be a string, not an integer"]),
        ("ca_file = \"\"", ["providers.p.ca_file: must not be empty"]),
    ])
    func brokenCAFilesAreReported(line: String, expected: [String]) {
        #expect(problems(Self.provider + line + "\n") == expected)
    }

    @Test func refreshPolicyAndProviderRateLimits() throws {
        let configuration = try load(Self.provider + """
            rate_limit = 5

            [refresh]
            refresh_at = 0.5
            jitter = 0
            safety_margin = 30
            max_concurrent = 4
            rate_limit = 20
            """)
        #expect(configuration.engine.policy.refreshAt == 0.5)
        #expect(configuration.engine.policy.jitter == 0)
        #expect(configuration.engine.policy.safetyMargin == 30)
        #expect(configuration.engine.maxConcurrentRefreshes == 4)
        #expect(configuration.engine.providerRate == 20)
        #expect(configuration.engine.providerRates == ["p": 5])
        #expect(problems("[refresh]\nrefresh_at = 1.5") == ["refresh.refresh_at: must be between 0.05 and 0.95, not 1.5"])
    }

    @Test func metricsListenOnLoopbackOrAUnixSocket() throws {
        #expect(try load("[metrics]\nlisten = \"127.0.0.1:9464\"").metrics == .tcp(host: "127.0.0.1", port: 9464))
        #expect(try load("[metrics]\nlisten = \"[::1]:9464\"").metrics == .tcp(host: "::1", port: 9464))
        #expect(try load("[metrics]\nsocket = \"/run/tokend/m.sock\"").metrics == .unix("/run/tokend/m.sock"))
        #expect(try load("").metrics == nil)
    }

    @Test(arguments: [("0", Duration.zero), ("7", .microseconds(7)), ("200", .microseconds(200))])
    func busyPollIsGivenInMicroseconds(value: String, expected: Duration) throws {
        #expect(try load("[socket]\nbusy_poll_us = \(value)").socket.busyPoll == expected)
    }

    @Test func defaultsApplyToAnEmptyFile() throws {
        let configuration = try load("")
        #expect(configuration.socket.busyPoll == .microseconds(50))
        #expect(configuration.vault.path == "/var/lib/tokend/vault.db")
        #expect(configuration.vault.keySource == .file("/etc/tokend/vault.key"))
        #expect(configuration.providers.isEmpty)
    }

    @Test(arguments: [
        ("[vault]\npaht = \"/x\"", ["vault.paht: unknown key"]),
        ("[vault]\npath = 42", ["vault.path: must be a string, not an integer"]),
        ("[vault]\nkey_file = \"/a\"\nkey_credential = \"b\"", ["vault.key_credential: give either key_file or key_credential, not both"]),
        ("vault = 1", ["vault: must be a table ([vault]), not an integer"]),
        ("[sockets]\npath = \"/x\"", ["sockets: unknown key"]),
        ("[metrics]\nlisten = \"0.0.0.0:9464\"", ["metrics.listen: must be a loopback address (127.0.0.1, ::1); metrics have no authentication"]),
        ("[metrics]\nlisten = \"127.0.0.1\"", ["metrics.listen: must be host:port, such as \"127.0.0.1:9464\""]),
        ("[metrics]", ["metrics.listen: is required (or socket = \"/run/tokend/metrics.sock\")"]),
        ("[socket]\nmode = \"0666\"", ["socket.mode: must not grant anything to others (o=---); use group to let clients in"]),
        ("[socket]\nmax_connections = 0", ["socket.max_connections: must be between 1 and 100000, not 0"]),
        ("[socket]\nmax_connections_per_uid = -1", ["socket.max_connections_per_uid: must be between 1 and 100000, not -1"]),
        ("[socket]\nmax_connections_per_uid = \"10\"", ["socket.max_connections_per_uid: must be an integer, not a string"]),
        ("[socket]\nbusy_poll_us = -1", ["socket.busy_poll_us: must be between 0 and 200, not -1"]),
        ("[socket]\nbusy_poll_us = 201", ["socket.busy_poll_us: must be between 0 and 200, not 201"]),
        ("[socket]\nbusy_poll_us = 9223372036854775807", ["socket.busy_poll_us: must be between 0 and 200, not 9223372036854775807"]),
        ("[socket]\nbusy_poll_us = 50.5", ["socket.busy_poll_us: must be an integer, not a floating-point number"]),
        ("[socket]\nbusy_poll_us = nan", ["socket.busy_poll_us: must be an integer, not a floating-point number"]),
        ("[socket]\nbusy_poll_us = \"50\"", ["socket.busy_poll_us: must be an integer, not a string"]),
        ("[admins]\nuids = [\"root\"]", ["admins.uids: must be an array of integers from 0 to 4294967294"]),
        ("[providers.p]\ntoken_endpoint = \"https://x\"", ["providers.p.kind: is required"]),
        ("[providers.p]\nkind = \"saml\"", ["providers.p.kind: must be \"oauth2\" or \"transmit\", not \"saml\""]),
        ("[providers.p]\nkind = \"oauth2\"\ntoken_endpoint = \"http://idp.example.com/token\"\nclient_id = \"c\"",
         ["providers.p: provider p: http://idp.example.com/token is plain http; tokens would cross the network unencrypted (set allow_insecure_http = true only for loopback tests)"]),
        ("[providers.p]\nkind = \"oauth2\"\ntoken_endpoint = \"https://x/t\"\nclient_secret = \"hunter2\"",
         ["providers.p.client_secret: secrets do not belong in the config file; use client_secret_file or client_secret_credential",
          "providers.p: provider p: a public client needs a client id"]),
        ("[providers.p]\nkind = \"oauth2\"\ntoken_endpoint = \"https://x/t\"\nclient_id = \"c\"\nclient_auth = \"jwt\"",
         ["providers.p.client_auth: must be one of \"client_secret_basic\", \"client_secret_post\", \"none\", not \"jwt\""]),
        ("[providers.p]\nkind = \"oauth2\"\ntoken_endpoint = \"https://x/t\"\nclient_id = \"c\"\ntimeout = 0",
         ["providers.p.timeout: must be between 0.1 and 300.0 seconds, not 0.0"]),
        ("[providers.t]\nkind = \"transmit\"\nclient_id = \"c\"\nclient_secret_file = \"/nonexistent/secret\"\nregion = \"mars\"",
         ["providers.t.client_secret_file: /nonexistent/secret: No such file or directory",
          "providers.t.region: must be one of \"us\", \"eu\", \"ca\", \"au\", \"sandbox\", not \"mars\"",
          "providers.t.client_secret_file: a transmit provider needs client_secret_file or client_secret_credential",
          "providers.t.region: is required (us, eu, ca, au, sandbox), or give base_url"]),
        ("[providers.\"bad name!\"]\nkind = \"oauth2\"", ["providers.bad name!: provider names use letters, digits, '-', '_' and '.'"]),
    ])
    func brokenFilesReportEveryProblem(text: String, expected: [String]) {
        #expect(problems(text) == expected)
    }

    @Test func aSyntaxErrorNamesTheLine() throws {
        let error = try #require(throws: ConfigError.self) { try self.load("[vault]\npath = \"unterminated\n") }
        #expect(error.problems.count == 1)
        #expect(error.problems[0].file.hasPrefix(file + ":2:"))
        #expect(error.problems[0].message.hasPrefix("TOML syntax error"))
    }

    @Test func aMissingFileIsOneClearProblem() throws {
        let error = try #require(throws: ConfigError.self) { try ConfigLoader.load(path: self.directory + "/nope.toml") }
        #expect(error.description == "\(directory)/nope.toml: configuration file does not exist")
    }

    @Test func anInsecureSecretFileIsRefused() throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: secretFile)
        let found = problems("[providers.t]\nkind = \"transmit\"\nregion = \"us\"\nclient_id = \"c\"\nclient_secret_file = \"\(secretFile)\"")
        #expect(found.first == "providers.t.client_secret_file: \(secretFile) is accessible by group or others (mode 0644); fix it with: chmod 600 \(secretFile)")
    }

    @Test func secretsComeFromSystemdCredentials() throws {
        let configuration = try load(
            "[providers.t]\nkind = \"transmit\"\nregion = \"us\"\nclient_id = \"c\"\nclient_secret_credential = \"client.secret\"",
            environment: ["CREDENTIALS_DIRECTORY": directory])
        guard case .transmit(let settings) = configuration.providers.first else {
            Issue.record("no transmit provider")
            return
        }
        #expect(settings.clientSecret.exposedValue == "top-secret")
    }

    @Test func theConfigPathComesFromTheOptionThenTheEnvironment() {
        #expect(ConfigLoader.resolvePath("/a.toml", environment: ["TOKEND_CONFIG": "/b.toml"]) == "/a.toml")
        #expect(ConfigLoader.resolvePath(nil, environment: ["TOKEND_CONFIG": "/b.toml"]) == "/b.toml")
        #expect(ConfigLoader.resolvePath(nil, environment: [:]) == "/etc/tokend/tokend.toml")
    }
}
