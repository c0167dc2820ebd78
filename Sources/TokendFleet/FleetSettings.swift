import Foundation
import Logging
import NIOSSL
import PostgresNIO
import TokendConfig
import TokendCore
import TokendVault

/// How to reach the fleet's PostgreSQL database.
///
/// A struct rather than a connection URL on purpose: a URL carries the
/// password inside a string that ends up in logs, argv and error messages.
/// Here the password is a ``Secret`` or the path of a private file, read only
/// when connecting.
package struct FleetSettings: Sendable {
    /// Where the database listens: the configuration's own type.
    package typealias Endpoint = FleetStoreConfiguration.Endpoint

    package enum Password: Sendable {
        case none
        /// A file holding the password (trailing newline ignored); it must
        /// be private (mode 0600 or stricter).
        case file(String)
        case secret(Secret)
    }

    /// The libpq `sslmode` values that are safe to offer (`prefer` and
    /// `allow` are left out: an attacker on the path can downgrade them),
    /// as the configuration names them.
    package typealias TLSMode = FleetStoreConfiguration.TLS

    package var endpoint: Endpoint
    package var database: String
    package var user: String
    package var password: Password
    package var tls: TLSMode
    /// The schema holding tokend's tables (created if missing); nil for the
    /// user's default search path.
    package var schema: String?
    package var connectTimeout: Duration
    /// Shown to the operator in `pg_stat_activity` (say, `tokend@host-3`).
    package var applicationName: String
    /// How long one store operation may wait for the database before it
    /// fails with `.storage` (the pool would otherwise wait for as long as
    /// the database is unreachable).
    package var operationTimeout: Duration

    package init(
        endpoint: Endpoint, database: String, user: String, password: Password = .none,
        tls: TLSMode = .disable, schema: String? = nil, connectTimeout: Duration = .seconds(10),
        applicationName: String = "tokend", operationTimeout: Duration = .seconds(30)
    ) {
        self.endpoint = endpoint
        self.database = database
        self.user = user
        self.password = password
        self.tls = tls
        self.schema = schema
        self.connectTimeout = connectTimeout
        self.applicationName = applicationName
        self.operationTimeout = operationTimeout
    }

    /// What the messages call the database: never the password.
    package var displayName: String {
        switch endpoint {
        case .tcp(let host, let port): "postgresql database \(database) at \(host):\(port)"
        case .unixSocket(let path): "postgresql database \(database) at \(path)"
        }
    }

    /// Checks every field; the message names the field and never a password.
    package func validate() throws {
        func invalid(_ what: String) -> VaultError { VaultError(.storage, "fleet store settings: \(what)") }
        switch endpoint {
        case .tcp(let host, let port):
            guard !host.isEmpty, host.utf8.count <= 253, Self.isPlain(host) else {
                throw invalid("host must be 1-253 printable characters without spaces")
            }
            guard (1...65535).contains(port) else { throw invalid("port \(port) is not in 1-65535") }
        case .unixSocket(let path):
            // sockaddr_un holds 108 bytes including the terminating NUL.
            guard path.hasPrefix("/"), path.utf8.count <= 107, Self.isPlain(path) else {
                throw invalid("unix socket path must be absolute, printable and at most 107 bytes")
            }
            if case .verifyFull = tls { throw invalid("TLS is not used over a unix socket; set tls to disable") }
            if case .require = tls { throw invalid("TLS is not used over a unix socket; set tls to disable") }
        }
        guard Self.isIdentifier(database, max: 63) else { throw invalid("database name must be 1-63 printable characters") }
        guard Self.isIdentifier(user, max: 63) else { throw invalid("user name must be 1-63 printable characters") }
        if let schema {
            guard Self.isSchemaName(schema) else {
                throw invalid("schema must match [a-z_][a-z0-9_]{0,62}")
            }
        }
        guard Self.isIdentifier(applicationName, max: 63) else {
            throw invalid("application name must be 1-63 printable characters")
        }
        guard connectTimeout > .zero, connectTimeout <= .seconds(300) else {
            throw invalid("connect timeout must be more than 0 and at most 300 s")
        }
        guard operationTimeout > .zero, operationTimeout <= .seconds(3600) else {
            throw invalid("operation timeout must be more than 0 and at most 3600 s")
        }
        if case .verifyFull(let caFile) = tls, caFile.isEmpty || !caFile.hasPrefix("/") {
            throw invalid("the CA file of tls verify-full must be an absolute path")
        }
    }

    /// The password, read now (a file can be rotated between connections).
    func resolvePassword() throws -> String? {
        switch password {
        case .none: return nil
        case .secret(let secret): return secret.exposedValue
        case .file(let path):
            guard try FilePermissions.mode(of: path) != nil else {
                throw VaultError(.missingFile, "database password file \(path) does not exist")
            }
            try FilePermissions.requirePrivate(path, what: "database password file")
            guard let data = FileManager.default.contents(atPath: path) else {
                throw VaultError(.missingFile, "database password file \(path) is not readable by this user")
            }
            guard data.count <= 4096, let text = String(data: data, encoding: .utf8) else {
                throw VaultError(.malformedKey, "database password file \(path) is not UTF-8 text of at most 4096 bytes")
            }
            let password = text.hasSuffix("\n") ? String(text.dropLast()) : text
            guard !password.isEmpty, !password.contains(where: { $0.isNewline || $0 == "\0" }) else {
                throw VaultError(.malformedKey, "database password file \(path) must hold one non-empty line")
            }
            return password
        }
    }

    /// The settings of one connection (the listener's).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        try validate()
        let password = try resolvePassword()
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS =
                switch try tlsConfiguration() {
                case nil: .disable
                case let config?: .require(try NIOSSLContext(configuration: config))
                }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: user, password: password, database: database)
        }
        let (seconds, attoseconds) = connectTimeout.components
        configuration.options.connectTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        if let schema { configuration.options.additionalStartupParameters = [("search_path", schema)] }
        configuration.options.additionalStartupParameters.append(("application_name", applicationName))
        return configuration
    }

    /// The settings of the store's connection pool.
    func clientConfiguration() throws -> PostgresClient.Configuration {
        try validate()
        let password = try resolvePassword()
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS =
                switch try tlsConfiguration() {
                case nil: .disable
                case let config?: .require(config)
                }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: user, password: password, database: database)
        }
        configuration.options.connectTimeout = connectTimeout
        configuration.options.maximumConnections = 8
        if let schema { configuration.options.additionalStartupParameters = [("search_path", schema)] }
        configuration.options.additionalStartupParameters.append(("application_name", applicationName))
        return configuration
    }

    private func tlsConfiguration() throws -> TLSConfiguration? {
        switch tls {
        case .disable:
            return nil
        case .require:
            var config = TLSConfiguration.makeClientConfiguration()
            config.certificateVerification = .none
            return config
        case .verifyFull(let caFile):
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw VaultError(.missingFile, "database CA file \(caFile) does not exist or is not readable")
            }
            var config = TLSConfiguration.makeClientConfiguration()
            config.trustRoots = .file(caFile)
            config.certificateVerification = .fullVerification
            return config
        }
    }

    static func isSchemaName(_ text: String) -> Bool {
        guard let first = text.utf8.first, text.utf8.count <= 63 else { return false }
        let lower = UInt8(ascii: "a")...UInt8(ascii: "z"), digit = UInt8(ascii: "0")...UInt8(ascii: "9")
        guard lower.contains(first) || first == UInt8(ascii: "_") else { return false }
        return text.utf8.allSatisfy { lower.contains($0) || digit.contains($0) || $0 == UInt8(ascii: "_") }
    }

    private static func isIdentifier(_ text: String, max: Int) -> Bool {
        !text.isEmpty && text.utf8.count <= max && isPlain(text)
    }

    /// Printable ASCII without spaces: nothing that could split a log line
    /// or a startup packet field.
    private static func isPlain(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
