import Foundation
import TokendCore
import TokendProviders

/// The files a provider section names: its client secret and its CA.
extension ConfigLoader {
    /// `ca_file`: a private CA's certificates, trusted besides the system store.
    static func caFile(_ reader: TableReader) -> ProviderTrust? {
        guard let path = reader.string("ca_file") else { return nil }
        guard !path.isEmpty else {
            reader.problem("ca_file", "must not be empty")
            return nil
        }
        do {
            return try ProviderTrust.load(path: path)
        } catch {
            reader.problem("ca_file", error.message)
            return nil
        }
    }

    static func clientSecret(_ reader: TableReader, environment: [String: String]) -> Secret? {
        let file = reader.string("client_secret_file")
        let credential = reader.string("client_secret_credential")
        if reader.table["client_secret"] != nil {
            _ = reader.string("client_secret")
            reader.problem(
                "client_secret", "secrets do not belong in the config file; use client_secret_file or client_secret_credential")
            return nil
        }
        do throws(SecretFile.Failure) {
            switch (file, credential) {
            case (let path?, nil): return try SecretFile.read(path: path)
            case (nil, let name?): return try SecretFile.read(credential: name, environment: environment)
            case (_?, _?):
                reader.problem("client_secret_credential", "give either client_secret_file or client_secret_credential, not both")
            case (nil, nil): break
            }
        } catch {
            reader.problem(file != nil ? "client_secret_file" : "client_secret_credential", error.message)
        }
        return nil
    }
}
