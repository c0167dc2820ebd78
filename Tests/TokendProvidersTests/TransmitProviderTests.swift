import Foundation
import Logging
import Testing
import TokendCore
import TokendTestKit
@testable import TokendProviders

/// Every Transmit path and error class, against the fake Transmit server
/// over real HTTP on loopback.
@Suite("Transmit provider against the fake Transmit server")
final class TransmitProviderTests {
    let fake: FakeTransmitServer
    let logs = SharedHTTP.logs
    let http = SharedHTTP.client
    let provider: TransmitProvider
    static let refreshPath = "/cis/v1/auth/token/refresh"

    init() async throws {
        fake = try await FakeTransmitServer.start()
        provider = try Self.makeProvider(fake: fake, http: http)
    }

    deinit {
        let fake = fake
        // Swift Testing has no async teardown; finish the cleanup detached.
        Task { await fake.shutdown() }
    }

    static func makeProvider(
        fake: FakeTransmitServer, http: ProviderHTTP, secret: String = FakeTransmitServer.clientSecret,
        timeout: Duration = .seconds(60)
    ) throws -> TransmitProvider {
        try TransmitProvider(
            settings: TransmitSettings(
                name: "transmit-test", baseURL: fake.baseURL, clientID: FakeTransmitServer.clientID,
                clientSecret: Secret(secret), requestTimeout: timeout, allowInsecureHTTP: true),
            http: http)
    }

    func expectKind(_ expected: ProviderError.Kind, _ body: () async throws -> Void) async -> ProviderError? {
        do {
            try await body()
            Issue.record("expected \(expected), got success")
            return nil
        } catch let error as ProviderError {
            #expect(error.kind == expected, "\(error.message)")
            return error
        } catch {
            Issue.record("expected ProviderError, got \(error)")
            return nil
        }
    }

    @Test func refreshRotatesTheTokenAndReusesTheClientToken() async throws {
        let (rt1, sessionID) = fake.mintSession(userID: "user-1")
        let first = try await provider.obtain(.refreshToken(Secret(rt1)))
        let rt2 = try #require(first.refreshToken)
        #expect(rt2.exposedValue != rt1)
        #expect(first.sessionID == nil, "refresh responses carry no session id: keep the stored one")
        #expect(first.lifetime == 300)
        #expect(first.tokenType == "Bearer")
        #expect(!fake.isRefreshTokenLive(rt1))
        #expect(fake.isRefreshTokenLive(rt2.exposedValue))

        let second = try await provider.obtain(.refreshToken(rt2))
        #expect(second.refreshToken != nil)
        #expect(fake.requestCount("/oidc/token") == 1, "one client token serves many calls")
        #expect(fake.reuseDetections == 0)
        #expect(fake.isSessionActive(sessionID))

        let headers = try #require(fake.lastHeaders(Self.refreshPath))
        #expect(headers.first(name: "User-Agent") == "tokend/\(TokendVersion.current)")
        #expect(headers.first(name: "Content-Type") == "application/json")
        #expect(headers.first(name: "Authorization")?.hasPrefix("Bearer ct-") == true)
        assertNoSecretsLogged([rt1, rt2.exposedValue, first.accessToken.exposedValue, FakeTransmitServer.clientSecret])
    }

    @Test func aReplayedRotatedTokenIsInvalidGrant() async throws {
        let (rt1, _) = fake.mintSession(userID: "user-1")
        _ = try await provider.obtain(.refreshToken(Secret(rt1)))
        let error = await expectKind(.invalidGrant) { _ = try await self.provider.obtain(.refreshToken(Secret(rt1))) }
        #expect(fake.reuseDetections == 1)
        #expect(error?.message.contains(rt1) == false)
        _ = await expectKind(.invalidGrant) { _ = try await self.provider.obtain(.refreshToken(Secret("rt-unknown"))) }
    }

    @Test func silentSessionAuthenticationReturnsAFullTokenSet() async throws {
        let (_, sessionID) = fake.mintSession(userID: "user-2")
        let grant = try await provider.obtain(.session(Secret(sessionID)))
        #expect(grant.sessionID?.exposedValue == sessionID)
        let refresh = try #require(grant.refreshToken)
        #expect(fake.isRefreshTokenLive(refresh.exposedValue))

        try await provider.endSession(Secret(sessionID))
        #expect(!fake.isSessionActive(sessionID))
        _ = await expectKind(.invalidGrant) { _ = try await self.provider.obtain(.session(Secret(sessionID))) }
        // Logging out a session that is already gone is not an error.
        try await provider.endSession(Secret(sessionID))
    }

    @Test func anExpiredClientTokenIsFetchedAgainOnce() async throws {
        let (rt1, _) = fake.mintSession(userID: "user-3")
        let first = try await provider.obtain(.refreshToken(Secret(rt1)))
        fake.expireClientTokens()
        let second = try await provider.obtain(.refreshToken(first.refreshToken!))
        #expect(second.refreshToken != nil)
        #expect(fake.requestCount("/oidc/token") == 2)
        #expect(fake.requestCount(Self.refreshPath) == 3, "one rejected with 401, then retried once")
        #expect(fake.reuseDetections == 0)
    }

    @Test func aWrongClientSecretIsClientMisconfigured() async throws {
        let wrong = try Self.makeProvider(fake: fake, http: http, secret: "definitely-wrong-secret")
        let (rt1, _) = fake.mintSession(userID: "user-4")
        let error = await expectKind(.clientMisconfigured) { _ = try await wrong.obtain(.refreshToken(Secret(rt1))) }
        #expect(error?.providerCode == "invalid_client")
        #expect(error?.message.contains("definitely-wrong-secret") == false)
        #expect(fake.isRefreshTokenLive(rt1), "the refresh token was never sent")
    }

    @Test func aForbiddenClientIsClientMisconfigured() async throws {
        let (rt1, _) = fake.mintSession(userID: "user-5")
        fake.inject(.status(403), path: Self.refreshPath)
        _ = await expectKind(.clientMisconfigured) { _ = try await self.provider.obtain(.refreshToken(Secret(rt1))) }
    }

    @Test(arguments: [
        (FakeFault.status(503), ProviderError.Kind.transient(retryAfter: nil)),
        (.status(502, retryAfter: "12"), .transient(retryAfter: 12)),
        (.status(429, retryAfter: "7"), .transient(retryAfter: 7)),
        (.status(429), .transient(retryAfter: nil)),
        (.reset, .transient(retryAfter: nil)),
        (.garbage, .malformedResponse),
        (.wrongTypes, .malformedResponse),
        (.hugeBody(declareLength: true), .malformedResponse),
        (.hugeBody(declareLength: false), .malformedResponse),
    ])
    func faultsAreClassified(fault: FakeFault, expected: ProviderError.Kind) async throws {
        let (rt1, _) = fake.mintSession(userID: "user-6")
        fake.inject(fault, path: Self.refreshPath)
        _ = await expectKind(expected) { _ = try await self.provider.obtain(.refreshToken(Secret(rt1))) }
        // A fault answered before the fake consumed the token: it still works.
        #expect(try await provider.obtain(.refreshToken(Secret(rt1))).refreshToken != nil)
    }

    @Test func retryAfterAsAnHTTPDateIsHonoured() async throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let (rt1, _) = fake.mintSession(userID: "user-7")
        let dated = Date()
        fake.inject(.status(429, retryAfter: formatter.string(from: dated.addingTimeInterval(90))), path: Self.refreshPath)
        let error = try await #require(throws: ProviderError.self) {
            _ = try await self.provider.obtain(.refreshToken(Secret(rt1)))
        }
        guard case .transient(let seconds?) = error.kind else {
            Issue.record("expected transient with Retry-After, got \(error.kind)")
            return
        }
        // 90 s from when the date was written, less the time the request
        // took (a loaded CI machine once took 20 s) and the date's rounding.
        let elapsed = Date().timeIntervalSince(dated)
        #expect(seconds >= 90 - elapsed - 1.5 && seconds <= 90, "\(seconds) s after \(elapsed) s")
    }

    @Test func aServerSlowerThanTheTimeoutIsTransientAndBounded() async throws {
        // Generous numbers: CI machines run many tests at once on two cores.
        let quick = try Self.makeProvider(fake: fake, http: http, timeout: .milliseconds(1500))
        let (rt1, _) = fake.mintSession(userID: "user-8")
        // Cache the client token first, so only the refresh meets the delay.
        for _ in 0..<5 where (try? await quick.clientToken.current()) == nil {}
        fake.inject(.delay(.seconds(30)), path: Self.refreshPath)
        let start = ContinuousClock.now
        let error = await expectKind(.transient(retryAfter: nil)) { _ = try await quick.obtain(.refreshToken(Secret(rt1))) }
        #expect(ContinuousClock.now - start < .seconds(20), "the timeout bounds the wait, not the server")
        #expect(error?.message.contains("timed out") == true)
    }

    @Test func clientCredentialsGrantReturnsAClientToken() async throws {
        let grant = try await provider.obtain(.clientCredentials)
        #expect(grant.accessToken.exposedValue.hasPrefix("ct-"))
        #expect(grant.lifetime == 3600)
        #expect(grant.refreshToken == nil)
    }

    @Test func sessionsAreListedAndRevoked() async throws {
        let (_, first) = fake.mintSession(userID: "user@example.com")
        let (_, second) = fake.mintSession(userID: "user@example.com")
        _ = fake.mintSession(userID: "someone-else")
        let sessions = try await provider.sessions(userID: "user@example.com")
        #expect(Set(sessions.map(\.sessionID.exposedValue)) == [first, second])
        #expect(sessions.allSatisfy { ($0.expiresAt?.timeIntervalSinceNow ?? 0) > 80_000 })
        #expect(sessions.allSatisfy { abs($0.createdAt?.timeIntervalSinceNow ?? 999) < 60 })

        try await provider.revokeSessions(userID: "user@example.com")
        #expect(try await provider.sessions(userID: "user@example.com").isEmpty)
        #expect(try await provider.sessions(userID: "someone-else").count == 1)
    }

    @Test func plainHTTPIsRefusedUnlessAllowed() throws {
        let error = try #require(throws: ProviderError.self) {
            try TransmitProvider(
                settings: TransmitSettings(
                    name: "t", baseURL: "http://api.example.com", clientID: "c", clientSecret: Secret("s")),
                http: http)
        }
        #expect(error.kind == .clientMisconfigured)
        #expect(error.message.contains("allow_insecure_http"))
    }

    @Test(arguments: TransmitRegion.allCases)
    func regionPresetsAreHTTPS(region: TransmitRegion) throws {
        #expect(region.baseURL.hasPrefix("https://api."))
        #expect(region.baseURL.hasSuffix("transmitsecurity.io"))
        _ = try TransmitProvider(
            settings: TransmitSettings(name: "t", baseURL: region.baseURL, clientID: "c", clientSecret: Secret("s")),
            http: http)
    }

    func assertNoSecretsLogged(_ secrets: [String]) {
        let lines = logs.all
        for secret in secrets {
            #expect(!lines.contains { $0.contains(secret) }, "a secret reached the logs")
        }
    }
}
