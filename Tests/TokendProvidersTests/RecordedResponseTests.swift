import Foundation
import Synchronization
import Testing
import TokendCore
import TokendTestKit
@testable import TokendProviders

/// The real providers against response bodies copied from the published
/// API references (`Recorded/`, each file's source in `Recorded/SOURCES.md`),
/// served over loopback HTTP. The fake Transmit server and the provider were
/// written from the same reading of the docs; these bodies are the docs'.
@Suite("providers against recorded response bodies")
final class RecordedResponseTests {
    /// A recorded body, byte for byte.
    static func recorded(_ file: String) throws -> Data {
        let url = try #require(Bundle.module.url(forResource: "Recorded/" + file, withExtension: nil), "missing \(file)")
        return try Data(contentsOf: url)
    }

    /// RFC 6749 §5.1's response headers, sent with every OAuth2 body.
    static let rfcHeaders = [
        ("Content-Type", "application/json;charset=UTF-8"), ("Cache-Control", "no-store"), ("Pragma", "no-cache"),
    ]

    /// Serves `routes[path]` (status, body) and records every request.
    final class Recorder: Sendable {
        let received = Mutex<[LoopbackHTTPRequest]>([])
        let routes: [String: (Int, Data)]
        init(_ routes: [String: (Int, Data)]) { self.routes = routes }

        func start() async throws -> LoopbackHTTPServer {
            try await LoopbackHTTPServer.start { [self] request in
                received.withLock { $0.append(request) }
                let path = String(request.path.split(separator: "?").first ?? "")
                guard let route = routes[path] else { return .json(404, ["error": "no route"]) }
                return .respond(status: route.0, headers: RecordedResponseTests.rfcHeaders, body: route.1)
            }
        }

        func requests(_ path: String) -> [LoopbackHTTPRequest] { received.withLock { $0.filter { $0.path == path } } }
    }

    func oauth2(_ server: LoopbackHTTPServer) throws -> OAuth2Provider {
        try OAuth2Provider(
            settings: OAuth2Settings(
                name: "rfc", tokenEndpoint: server.baseURL + "/token", clientID: "s6BhdRkqt3", clientSecret: Secret("gX1fBat3bV"),
                requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: SharedHTTP.client)
    }

    /// RFC 6749 §5.1 (the answer to §6's refresh request): every field is
    /// taken as the RFC defines it, the unknown `example_parameter` ignored.
    @Test func oauth2RefreshReadsTheRFCSuccessfulResponse() async throws {
        let recorder = Recorder(["/token": (200, try Self.recorded("rfc6749-5.1-access-token-response.json"))])
        let server = try await recorder.start()
        let grant = try await oauth2(server).obtain(.refreshToken(Secret("tGzv3JOkF0XZ5xTTWIWpAA")))
        #expect(grant.accessToken.exposedValue == "2YotnFZFEjr1zCsicMWpAA")
        #expect(grant.tokenType == "example")
        #expect(grant.lifetime == 3600)
        #expect(grant.refreshToken?.exposedValue == "tGzv3JOkF0XZ5xTTWIWpAA")
        #expect(grant.scope == nil && grant.sessionID == nil)
        // The request as RFC 6749 §6 shows it.
        let request = try #require(recorder.requests("/token").first)
        #expect(request.form["grant_type"] == "refresh_token" && request.form["refresh_token"] == "tGzv3JOkF0XZ5xTTWIWpAA")
        #expect(request.headers.first(name: "Authorization") == "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW", "§6's example header")
        await server.shutdown()
    }

    /// RFC 6749 §4.4.3: a client credentials answer has no refresh token.
    @Test func oauth2ClientCredentialsReadsTheRFCResponse() async throws {
        let recorder = Recorder(["/token": (200, try Self.recorded("rfc6749-4.4.3-client-credentials-response.json"))])
        let server = try await recorder.start()
        let grant = try await oauth2(server).obtain(.clientCredentials)
        #expect(grant.accessToken.exposedValue == "2YotnFZFEjr1zCsicMWpAA")
        #expect(grant.tokenType == "example" && grant.lifetime == 3600)
        #expect(grant.refreshToken == nil)
        #expect(recorder.requests("/token").first?.form["grant_type"] == "client_credentials")
        await server.shutdown()
    }

    /// RFC 6749 §5.2's example (`400`, `invalid_request`) is a client
    /// problem, not a dead grant. The other rows use §5.2's body shape with
    /// codes from its list (not verbatim examples): `invalid_grant` is the
    /// only one that kills a grant; `invalid_client` may come with 401.
    @Test(arguments: [
        (400, nil as String?, ProviderError.Kind.clientMisconfigured),
        (400, #"{"error":"invalid_grant"}"#, .invalidGrant),
        (401, #"{"error":"invalid_client"}"#, .clientMisconfigured),
        (400, #"{"error":"unauthorized_client"}"#, .clientMisconfigured),
        (400, #"{"error":"unsupported_grant_type"}"#, .clientMisconfigured),
        (400, #"{"error":"invalid_scope"}"#, .clientMisconfigured),
    ])
    func oauth2ClassifiesRFCErrorResponses(status: Int, body: String?, kind: ProviderError.Kind) async throws {
        let data = try body.map { Data($0.utf8) } ?? Self.recorded("rfc6749-5.2-error-response.json")
        let recorder = Recorder(["/token": (status, data)])
        let server = try await recorder.start()
        do {
            _ = try await oauth2(server).obtain(.refreshToken(Secret("tGzv3JOkF0XZ5xTTWIWpAA")))
            Issue.record("an error response gave a token")
        } catch let error as ProviderError {
            #expect(error.kind == kind, "\(error.message)")
            #expect(!error.message.contains("tGzv3JOkF0XZ5xTTWIWpAA") && !error.message.contains("gX1fBat3bV"))
        }
        await server.shutdown()
    }

    static let clientJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjbGllbnQtaWQiLCJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJl"

    func transmit(_ server: LoopbackHTTPServer) throws -> TransmitProvider {
        try TransmitProvider(
            settings: TransmitSettings(
                name: "documented", baseURL: server.baseURL, clientID: "client-id", clientSecret: Secret("client-secret"),
                requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: SharedHTTP.client)
    }

    /// Transmit's token refresh and session authentication (API reference,
    /// Sessions) with the client token of "Get client access tokens": the
    /// documented bodies parse into full token sets, and each `/cis` call
    /// carries the client token as a Bearer token with a JSON body.
    @Test func transmitReadsTheDocumentedTokenSets() async throws {
        let recorder = Recorder([
            "/oidc/token": (200, try Self.recorded("transmit-client-token-200.json")),
            "/cis/v1/auth/token/refresh": (200, try Self.recorded("transmit-token-refresh-200.json")),
            "/cis/v1/auth/session/authenticate": (200, try Self.recorded("transmit-session-authenticate-200.json")),
        ])
        let server = try await recorder.start()
        let provider = try transmit(server)

        let refreshed = try await provider.obtain(.refreshToken(Secret("rt-documented")))
        #expect(refreshed.accessToken.exposedValue == "string" && refreshed.tokenType == "string")
        #expect(refreshed.lifetime == 3600)
        #expect(refreshed.refreshToken?.exposedValue == "string", "a rotated refresh token is kept")
        let authenticated = try await provider.obtain(.session(Secret("sid-documented")))
        #expect(authenticated.accessToken.exposedValue == "string" && authenticated.lifetime == 3600)
        #expect(authenticated.sessionID?.exposedValue == "string")
        #expect(authenticated.refreshToken?.exposedValue == "string")

        let clientRequest = try #require(recorder.requests("/oidc/token").first)
        #expect(clientRequest.form == ["grant_type": "client_credentials", "client_id": "client-id", "client_secret": "client-secret"])
        #expect(recorder.requests("/oidc/token").count == 1, "the client token is cached for both calls")
        for (path, field, value) in [
            ("/cis/v1/auth/token/refresh", "refresh_token", "rt-documented"),
            ("/cis/v1/auth/session/authenticate", "session_id", "sid-documented"),
        ] {
            let request = try #require(recorder.requests(path).first, "\(path)")
            #expect(request.headers.first(name: "Authorization") == "Bearer \(Self.clientJWT)", "\(path)")
            #expect(request.headers.first(name: "Content-Type") == "application/json", "\(path)")
            #expect(request.json?[field] as? String == value, "\(path)")
        }
        let clientToken = try await provider.obtain(.clientCredentials)
        #expect(clientToken.accessToken.exposedValue == Self.clientJWT && clientToken.lifetime == 3600)
        await server.shutdown()
    }
}
