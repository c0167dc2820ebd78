import Foundation
import NIOSSL
import TokendCore

/// The certificates of a private certificate authority (`ca_file`) that a
/// provider's HTTPS server chains to, trusted in addition to the system
/// store (`/etc/ssl/certs`), which stays in use.
///
/// Loaded when the configuration is read (and again on every reload), so a
/// missing or broken file is a configuration error naming the file, not a
/// TLS failure at the first refresh.
package struct ProviderTrust: Sendable {
    /// A CA bundle is a few kilobytes; anything this large is not one.
    package static let maximumFileSize = 1 << 20

    package let path: String
    package let tlsConfiguration: TLSConfiguration

    /// - Throws: ``ProviderError`` `.clientMisconfigured` with the path and
    ///   what is wrong with the file.
    package static func load(path: String) throws(ProviderError) -> ProviderTrust {
        func problem(_ text: String) -> ProviderError { ProviderError(.clientMisconfigured, "CA file \(path) \(text)") }
        guard path.hasPrefix("/") else { throw problem("must be an absolute path") }
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw problem("cannot be read (missing, or not readable by this user)")
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular else { throw problem("is not a regular file") }
        guard let size = attributes[.size] as? Int, size <= maximumFileSize else {
            throw problem("is larger than \(maximumFileSize) bytes; a CA file holds a few PEM certificates")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw problem("is not readable by this user") }
        let text = String(decoding: data, as: UTF8.self)
        // A key next to the certificates means the wrong file was named
        // (a server's key pair); refuse rather than load a secret we do not need.
        guard !text.contains("PRIVATE KEY-----") else {
            throw problem("holds a private key; name a file with only the CA's certificates (PEM)")
        }
        guard text.contains("-----BEGIN CERTIFICATE-----") else {
            throw problem("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(Array(data))
        } catch {
            throw problem("is not a valid PEM certificate bundle")
        }
        guard !certificates.isEmpty else { throw problem("holds no PEM certificate") }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.additionalTrustRoots = [.certificates(certificates)]
        return ProviderTrust(path: path, tlsConfiguration: configuration)
    }
}
