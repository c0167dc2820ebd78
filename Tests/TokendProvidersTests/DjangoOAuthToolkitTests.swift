import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import Testing
import TokendCore
@testable import TokendProviders

/// Integration tests against a real OAuth2 server: django-oauth-toolkit,
/// started on loopback by `scripts/test.sh` (rotation and reuse protection
/// on, 5 s access tokens, 5 s reuse grace). `TOKEND_TEST_OAUTH2_URL` points
/// at it; the README's test command always sets it.
@Suite(
    "OAuth2 provider against django-oauth-toolkit",
    .enabled(if: DjangoOAuthToolkit.url != nil, "start it with scripts/oauth2-server/start.sh (scripts/test.sh does)"))
struct DjangoOAuthToolkitTests {
    let http = SharedHTTP.client

    func provider(
        clientID: String = "tokend-refresh", secret: String = "tokend-refresh-secret",
        auth: ClientAuthMethod = .clientSecretBasic
    ) throws -> OAuth2Provider {
        try OAuth2Provider(
            settings: OAuth2Settings(
                name: "dot", tokenEndpoint: DjangoOAuthToolkit.url! + "/o/token/", clientID: clientID,
                clientSecret: Secret(secret), clientAuth: auth, requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: http)
    }

    @Test(arguments: [ClientAuthMethod.clientSecretBasic, .clientSecretPost])
    func refreshRotatesAndTheOldTokenIsThenRejected(auth: ClientAuthMethod) async throws {
        let rt1 = try await DjangoOAuthToolkit.mint(1)[0]
        let provider = try provider(auth: auth)
        let grant = try await provider.obtain(.refreshToken(Secret(rt1)))
        let rt2 = try #require(grant.refreshToken)
        #expect(rt2.exposedValue != rt1)
        #expect(grant.lifetime == 5)
        #expect(grant.scope == "read")
        // Within the 5 s grace period DOT answers a replay with the same
        // tokens; past it, the old token is dead.
        try await Task.sleep(for: .seconds(6))
        let error = try await #require(throws: ProviderError.self) {
            _ = try await provider.obtain(.refreshToken(Secret(rt1)))
        }
        #expect(error.kind == .invalidGrant)
        #expect(error.providerCode == "invalid_grant")
        // Reuse protection: the replay revoked the whole family.
        #expect(try await DjangoOAuthToolkit.live([rt2.exposedValue]) == [rt2.exposedValue: false])
    }

    @Test func rotationChainsWithoutReuse() async throws {
        var token = Secret(try await DjangoOAuthToolkit.mint(1)[0])
        let provider = try provider()
        for _ in 0..<3 {
            token = try #require(try await provider.obtain(.refreshToken(token)).refreshToken)
        }
        #expect(try await DjangoOAuthToolkit.live([token.exposedValue]) == [token.exposedValue: true])
    }

    @Test func clientCredentials() async throws {
        let grant = try await provider(clientID: "tokend-cc", secret: "tokend-cc-secret").obtain(.clientCredentials)
        #expect(!grant.accessToken.isEmpty)
        #expect(grant.refreshToken == nil)
        #expect(grant.lifetime == 5)
    }

    @Test(arguments: [ClientAuthMethod.clientSecretBasic, .clientSecretPost])
    func aWrongClientSecretIsClientMisconfigured(auth: ClientAuthMethod) async throws {
        let rt1 = try await DjangoOAuthToolkit.mint(1)[0]
        let error = try await #require(throws: ProviderError.self) {
            _ = try await self.provider(secret: "wrong-secret-value", auth: auth).obtain(.refreshToken(Secret(rt1)))
        }
        #expect(error.kind == .clientMisconfigured)
        #expect(error.providerCode == "invalid_client")
        #expect(!error.message.contains("wrong-secret-value"))
        #expect(try await DjangoOAuthToolkit.live([rt1]) == [rt1: true], "a refused client consumed nothing")
    }
}

/// Test-only helpers of the django-oauth-toolkit test server.
enum DjangoOAuthToolkit {
    static var url: String? { ProcessInfo.processInfo.environment["TOKEND_TEST_OAUTH2_URL"] }

    /// Refresh tokens as a completed sign-in would leave them.
    static func mint(_ count: Int) async throws -> [String] {
        let object = try await post("/test/mint?count=\(count)", body: nil)
        return object["refresh_tokens"] as? [String] ?? []
    }

    /// Whether each refresh token exists and is not revoked.
    static func live(_ tokens: [String]) async throws -> [String: Bool] {
        let body = try JSONSerialization.data(withJSONObject: ["refresh_tokens": tokens])
        return (try await post("/test/status", body: body))["live"] as? [String: Bool] ?? [:]
    }

    private static func post(_ path: String, body: Data?) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url! + path)
        request.method = .POST
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 10 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: bytes)) as? [String: Any]) ?? [:]
    }
}
