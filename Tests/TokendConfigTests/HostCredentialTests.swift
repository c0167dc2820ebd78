import Foundation
import Testing
import TokendCore
@testable import TokendConfig

@Suite("The [hosts] table: which identity a credential helper uses for a host")
struct HostCredentialTests {
    @Test(arguments: [
        ("https://Registry.Example.com/v2/", "registry.example.com", nil),
        ("registry.example.com:5000", "registry.example.com", "5000"),
        ("https://user@git.example.com:8443/org/repo.git?x=1", "git.example.com", "8443"),
        ("[::1]:6443", "[::1]", "6443"),
        ("cache.example.com", "cache.example.com", nil),
    ] as [(String, String, String?)])
    func urlsAndHostsNormalize(input: String, host: String, port: String?) {
        let split = HostKey.split(input)
        #expect(split?.0 == host)
        #expect(split?.1 == port)
    }

    @Test(arguments: ["", "https://", "a b", "host:", "host:abc", "host:123456", "ho\u{1}st", "[::1", String(repeating: "a", count: 300), "hé.example"])
    func brokenHostsAreRefused(input: String) {
        #expect(HostKey.split(input) == nil)
    }

    @Test func anExactPortWinsOverTheBareHost() {
        let configuration = ClientConfiguration(socketPath: "/s", hosts: [
            HostCredential(host: "h.example", identity: IdentityName("bare")!),
            HostCredential(host: "h.example:5000", identity: IdentityName("with-port")!, username: "u"),
        ])
        #expect(configuration.host(for: "https://h.example:5000/v2/")?.identity.rawValue == "with-port")
        #expect(configuration.host(for: "h.example:6000")?.identity.rawValue == "bare")
        #expect(configuration.host(for: "H.EXAMPLE")?.identity.rawValue == "bare")
        #expect(configuration.host(for: "other.example") == nil)
    }
}
