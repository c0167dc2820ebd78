import Foundation
import Testing
import TokendCore
import TokendTestKit
@testable import TokendProviders

#if canImport(Glibc)
import Glibc
#endif

/// Providers over real TLS: a certificate authority and a server
/// certificate made by this test (`scripts/make-test-ca.sh`, openssl), an
/// HTTPS token endpoint (`scripts/fake-oauth2-https.py`), and `ca_file`.
@Suite("Providers over TLS with a private CA (ca_file)")
final class ProviderTLSTests {
    static let scripts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts").path

    let directory: String
    let server: ChildProcess
    let port: Int
    let http = SharedHTTP.client

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await Self.makeCA(in: directory)
        try "client-s3cret\n".write(toFile: directory + "/client.secret", atomically: true, encoding: .utf8)
        server = try ChildProcess(
            "/usr/bin/python3",
            [
                Self.scripts + "/fake-oauth2-https.py", "--cert", directory + "/server.pem", "--key", directory + "/server.key",
                "--client-secret-file", directory + "/client.secret", "--issued-file", directory + "/issued",
            ],
            output: directory + "/server.out")
        var found: Int? = nil
        for _ in 0..<500 where found == nil {
            if let line = server.output.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }) {
                found = Int(line.dropFirst("listening ".count))
            } else if await server.wait(timeout: .milliseconds(20)) != nil {
                break
            }
        }
        guard let found else {
            await server.kill()
            throw POSIXError(.ECHILD)
        }
        port = found
    }

    deinit {
        server.signal(SIGKILL)
        _ = waitpid(server.pid, nil, 0)
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func makeCA(in directory: String) async throws {
        let maker = try ChildProcess("/bin/bash", [scripts + "/make-test-ca.sh", directory], output: directory + "/.ca.out")
        let status = await maker.wait(timeout: .seconds(60))
        try #require(status == 0, "make-test-ca.sh: \(maker.output)")
    }

    func provider(trust: ProviderTrust?) throws -> OAuth2Provider {
        try OAuth2Provider(
            settings: OAuth2Settings(
                name: "private", tokenEndpoint: "https://127.0.0.1:\(port)/token", clientID: "tokend",
                clientSecret: Secret("client-s3cret"), requestTimeout: .seconds(60), trust: trust),
            http: http)
    }

    @Test func aProviderWithItsCAFileGetsATokenOverTLS() async throws {
        let grant = try await provider(trust: ProviderTrust.load(path: directory + "/ca.pem")).obtain(.clientCredentials)
        let issued = try String(contentsOfFile: directory + "/issued", encoding: .utf8)
        #expect(issued.split(separator: "\n").map(String.init).contains(grant.accessToken.exposedValue))
    }

    @Test func withoutTheCAFileTheCertificateIsRejectedAndTheErrorSaysWhy() async throws {
        let error = await #expect(throws: ProviderError.self) {
            _ = try await self.provider(trust: nil).obtain(.clientCredentials)
        }
        #expect(error?.kind == .transient(retryAfter: nil))
        #expect(error?.message.contains("ca_file") == true, "\(String(describing: error))")
        #expect((try? String(contentsOfFile: directory + "/issued", encoding: .utf8)) == nil)
    }

    @Test func anotherCAIsNotTrusted() async throws {
        let other = directory + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try await Self.makeCA(in: other)
        await #expect(throws: ProviderError.self) {
            _ = try await self.provider(trust: ProviderTrust.load(path: other + "/ca.pem")).obtain(.clientCredentials)
        }
    }

    /// Each broken ca_file is a configuration error that names the file
    /// and the problem; nothing is loaded.
    @Test func brokenCAFilesAreRefusedWithTheReason() throws {
        let pem = try String(contentsOfFile: directory + "/ca.pem", encoding: .utf8)
        let key = try String(contentsOfFile: directory + "/server.key", encoding: .utf8)
        let cases: [(name: String, contents: String?, expected: String)] = [
            ("missing.pem", nil, "cannot be read"),
            ("empty.pem", "", "holds no PEM certificate"),
            ("garbage.pem", "\u{1}\u{2}not a certificate\n", "holds no PEM certificate"),
            ("truncated.pem", String(pem.prefix(pem.count / 2)), "not a valid PEM certificate bundle"),
            ("corrupt.pem", pem.replacingOccurrences(of: "M", with: "#"), "not a valid PEM certificate bundle"),
            ("with-key.pem", pem + key, "holds a private key"),
            ("huge.pem", pem + String(repeating: "x", count: ProviderTrust.maximumFileSize), "is larger than"),
        ]
        for item in cases {
            let path = directory + "/" + item.name
            if let contents = item.contents { try contents.write(toFile: path, atomically: true, encoding: .utf8) }
            let error = #expect(throws: ProviderError.self) { try ProviderTrust.load(path: path) }
            #expect(error?.kind == .clientMisconfigured)
            #expect(error?.message.contains(path) == true && error?.message.contains(item.expected) == true,
                "\(item.name): \(String(describing: error))")
        }
        let relative = #expect(throws: ProviderError.self) { try ProviderTrust.load(path: "ca.pem") }
        #expect(relative?.message.contains("absolute path") == true)
        let folder = #expect(throws: ProviderError.self) { try ProviderTrust.load(path: directory) }
        #expect(folder?.message.contains("not a regular file") == true)
    }
}
