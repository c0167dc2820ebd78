import Foundation
import TokendConfig
import TokendCore

extension FleetSettings {
    /// `tokend@<hostname>`: which host a connection in `pg_stat_activity`
    /// belongs to, cut to PostgreSQL's 63 bytes of printable ASCII.
    package static var defaultApplicationName: String {
        let host = ProcessInfo.processInfo.hostName.unicodeScalars.filter { $0.value > 0x20 && $0.value < 0x7F }
        let name = "tokend@" + String(host)
        return String(decoding: Array(name.utf8.prefix(63)), as: UTF8.self)
    }

    /// The connection settings of the `[vault.postgresql]` table. A
    /// `password_credential` is resolved to its file now (it needs
    /// `$CREDENTIALS_DIRECTORY`); the file itself is read at each connect.
    ///
    /// - Throws: ``VaultError`` when the credential cannot be resolved or a
    ///   field is out of bounds.
    package init(
        _ configuration: FleetStoreConfiguration, applicationName: String = FleetSettings.defaultApplicationName,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        let endpoint: Endpoint =
            switch configuration.endpoint {
            case .tcp(let host, let port): .tcp(host: host, port: port)
            case .unixSocket(let path): .unixSocket(path: path)
            }
        let password: Password
        switch configuration.password {
        case .none: password = .none
        case .file(let path): password = .file(path)
        case .credential(let name):
            switch SystemdCredential.path(of: name, environment: environment) {
            case .success(let path): password = .file(path)
            case .failure(let problem): throw VaultError(.missingFile, "database password: \(problem.message)")
            }
        }
        let tls: TLSMode =
            switch configuration.tls {
            case .disable: .disable
            case .require: .require
            case .verifyFull(let caFile): .verifyFull(caFile: caFile)
            }
        self.init(
            endpoint: endpoint, database: configuration.database, user: configuration.user, password: password, tls: tls,
            schema: configuration.schema, applicationName: configuration.applicationName ?? applicationName)
        try validate()
    }

    /// Reads the password source once, for `check-config`: the file exists,
    /// is private and holds one line. The password itself is dropped.
    package func checkPassword() throws {
        _ = try resolvePassword()
    }
}
