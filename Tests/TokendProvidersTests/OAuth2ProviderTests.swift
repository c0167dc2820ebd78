import Foundation
import Synchronization
import Testing
import TokendCore
import TokendTestKit
@testable import TokendProviders

/// The OAuth2 request shapes and response parsing, against a loopback HTTP
/// server that records what it received and answers what the test says.
@Suite("OAuth2 provider: request shapes and response parsing")
final class OAuth2ProviderTests {
    /// What the server received, and what it answers next.
    final class Exchange: Sendable {
        let received = Mutex<[LoopbackHTTPRequest]>([])
        let answer = Mutex<LoopbackHTTPAction>(.json(200, ["access_token": "at-1", "token_type": "Bearer", "expires_in": 600]))
    }

    let exchange = Exchange()
    let server: LoopbackHTTPServer
    let http = SharedHTTP.client

    init() async throws {
        let exchange = exchange
        server = try await LoopbackHTTPServer.start { request in
            exchange.received.withLock { $0.append(request) }
            return exchange.answer.withLock { $0 }
        }
    }

    deinit {
        let server = server
        Task { await server.shutdown() }
    }

    func provider(_ auth: ClientAuthMethod, secret: String? = "s3cret+/=", scope: String? = nil) throws -> OAuth2Provider {
        try OAuth2Provider(
            settings: OAuth2Settings(
                name: "corp", tokenEndpoint: server.baseURL + "/o/token/", clientID: "client one",
                clientSecret: secret.map(Secret.init), clientAuth: auth, scope: scope, resource: "https://api.example",
                // A minute: these tests are about what is sent and parsed; on
                // a loaded CI machine a loopback request once took over 10 s.
                defaultLifetime: 1234, requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: http)
    }

    var lastRequest: LoopbackHTTPRequest? { exchange.received.withLock { $0.last } }

    @Test func refreshWithClientSecretBasic() async throws {
        let grant = try await provider(.clientSecretBasic, scope: "read write").obtain(.refreshToken(Secret("rt-1")))
        #expect(grant.accessToken.exposedValue == "at-1")
        #expect(grant.lifetime == 600)
        #expect(grant.refreshToken == nil, "no refresh_token in the response: keep the old one")
        let request = try #require(lastRequest)
        #expect(request.path == "/o/token/")
        #expect(request.headers.first(name: "Content-Type") == "application/x-www-form-urlencoded")
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let expected = "Basic " + Data("client+one:s3cret%2B%2F%3D".utf8).base64EncodedString()
        #expect(request.headers.first(name: "Authorization") == expected)
        #expect(request.form == [
            "grant_type": "refresh_token", "refresh_token": "rt-1", "scope": "read write",
            "resource": "https://api.example",
        ])
    }

    @Test func clientCredentialsWithClientSecretPost() async throws {
        _ = try await provider(.clientSecretPost).obtain(.clientCredentials)
        let request = try #require(lastRequest)
        #expect(request.headers.first(name: "Authorization") == nil)
        #expect(request.form == [
            "grant_type": "client_credentials", "client_id": "client one", "client_secret": "s3cret+/=",
            "resource": "https://api.example",
        ])
    }

    @Test func publicClientSendsOnlyItsID() async throws {
        _ = try await provider(.none, secret: nil).obtain(.refreshToken(Secret("rt-9")))
        let request = try #require(lastRequest)
        #expect(request.headers.first(name: "Authorization") == nil)
        #expect(request.form["client_id"] == "client one")
        #expect(request.form["client_secret"] == nil)
    }

    @Test func missingCredentialsAreRejectedAtConfiguration() {
        #expect(throws: ProviderError.self) { try self.provider(.clientSecretBasic, secret: nil) }
    }

    @Test func rotationAndScopeAreParsed() async throws {
        exchange.answer.withLock {
            $0 = .json(200, ["access_token": "at-2", "token_type": "bearer", "expires_in": "900", "refresh_token": "rt-2", "scope": "read"])
        }
        let grant = try await provider(.clientSecretBasic).obtain(.refreshToken(Secret("rt-1")))
        #expect(grant.refreshToken?.exposedValue == "rt-2")
        #expect(grant.lifetime == 900, "a quoted expires_in is accepted")
        #expect(grant.scope == "read")
    }

    @Test func withoutExpiresInTheJWTExpDecides() async throws {
        let exp = Int(Date().timeIntervalSince1970) + 1800
        let payload = Data("{\"sub\":\"svc\",\"exp\":\(exp)}".utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        exchange.answer.withLock { $0 = .json(200, ["access_token": "eyJhbGciOiJub25lIn0.\(payload).sig", "token_type": "Bearer"]) }
        let before = Date().timeIntervalSince1970
        let grant = try await provider(.clientSecretBasic).obtain(.clientCredentials)
        let after = Date().timeIntervalSince1970
        // Counted from when the reply was read, somewhere in between (whole
        // seconds in `exp`, so one second of slack on either side).
        #expect(grant.lifetime >= Double(exp) - after - 1 && grant.lifetime <= Double(exp) - before + 1, "\(grant.lifetime)")

        exchange.answer.withLock { $0 = .json(200, ["access_token": "opaque", "token_type": "Bearer"]) }
        #expect(try await provider(.clientSecretBasic).obtain(.clientCredentials).lifetime == 1234, "else the default lifetime")
    }

    @Test(arguments: [
        ("invalid_grant", 400, ProviderError.Kind.invalidGrant),
        ("invalid_client", 401, .clientMisconfigured),
        ("unauthorized_client", 400, .clientMisconfigured),
        ("invalid_scope", 400, .clientMisconfigured),
        ("temporarily_unavailable", 400, .transient(retryAfter: nil)),
        ("server_error", 500, .transient(retryAfter: nil)),
    ])
    func oauth2ErrorsAreClassified(code: String, status: Int, expected: ProviderError.Kind) async throws {
        exchange.answer.withLock { $0 = .json(status, ["error": code, "error_description": "echo rt-secret-echo"]) }
        let error = try await #require(throws: ProviderError.self) {
            _ = try await self.provider(.clientSecretBasic).obtain(.refreshToken(Secret("rt-secret-echo")))
        }
        #expect(error.kind == expected)
        #expect(error.providerCode == code)
        #expect(!error.message.contains("rt-secret-echo"), "a secret echoed by the server is scrubbed")
    }

    @Test(arguments: [
        #"{"token_type":"Bearer","expires_in":60}"#, #"{"access_token":42}"#, #"{"access_token":"x","expires_in":true}"#,
        #"{"access_token":"x","refresh_token":7}"#, "[1,2,3]", "",
    ])
    func malformedSuccessBodies(body: String) async throws {
        exchange.answer.withLock { $0 = .respond(status: 200, headers: [("Content-Type", "application/json")], body: Data(body.utf8)) }
        let error = try await #require(throws: ProviderError.self) {
            _ = try await self.provider(.clientSecretBasic).obtain(.clientCredentials)
        }
        #expect(error.kind == .malformedResponse)
    }

    @Test func theSessionGrantIsTransmitOnly() async throws {
        let error = try await #require(throws: ProviderError.self) {
            _ = try await self.provider(.clientSecretBasic).obtain(.session(Secret("sid")))
        }
        #expect(error.kind == .unsupported)
    }
}
