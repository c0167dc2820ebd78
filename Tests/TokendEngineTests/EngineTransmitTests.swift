import Foundation
import Testing
import TokendCore
import TokendCache
import TokendEngine
import TokendProviders
import TokendTestKit
import TokendVault

/// The engine with the real Transmit provider, against the fake Transmit
/// server over loopback HTTP, with a real vault.
@Suite("Refresh engine against the fake Transmit server")
final class EngineTransmitTests {
    static let http = ProviderHTTP()
    let fake: FakeTransmitServer
    let directory: String
    let vault: SQLiteVault
    let engine: RefreshEngine<ContinuousClock>

    init() async throws {
        fake = try await FakeTransmitServer.start()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-engine-tx-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        vault = try SQLiteVault.create(at: directory + "/vault.db", kek: try KeyEncryptionKey.generate(at: directory + "/vault.key"))
        let provider = try TransmitProvider(
            settings: TransmitSettings(
                name: "transmit", baseURL: fake.baseURL, clientID: FakeTransmitServer.clientID,
                clientSecret: Secret(FakeTransmitServer.clientSecret), requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: Self.http)
        engine = RefreshEngine(vault: vault, providers: ["transmit": provider], clock: ContinuousClock())
    }

    deinit {
        try? vault.close()
        try? FileManager.default.removeItem(atPath: directory)
        let fake = fake
        Task { await fake.shutdown() }
    }

    func enroll(_ name: String, refreshToken: String, sessionID: String) async throws {
        try await vault.enroll(Enrollment(
            name: IdentityName(name)!, provider: "transmit", refreshToken: Secret(refreshToken), sessionID: Secret(sessionID)))
        try await engine.start()
    }

    func refresh(_ name: String) async -> RefreshOutcome {
        await engine.refresh(IdentityName(name)!, force: true)
    }

    func runLoop<T>(_ body: () async throws -> T) async rethrows -> T {
        let engine = engine
        let loop = Task { try? await engine.run() }
        defer { loop.cancel() }
        return try await body()
    }

    @Test func rotationIsPersistedAndReuseNeverTriggered() async throws {
        let (rt0, sessionID) = fake.mintSession(userID: "u1")
        try await enroll("u1", refreshToken: rt0, sessionID: sessionID)
        try await runLoop {
            var seen: Set<String> = [rt0]
            for _ in 0..<5 {
                guard case .refreshed = await refresh("u1") else {
                    Issue.record("refresh failed")
                    return
                }
                let stored = try #require(try await vault.identity(named: IdentityName("u1")!))
                let current = try #require(stored.secrets.refreshToken?.exposedValue)
                #expect(!seen.contains(current), "each refresh stores the rotated token")
                #expect(fake.isRefreshTokenLive(current))
                #expect(stored.secrets.sessionID?.exposedValue == sessionID, "refresh keeps the stored session id")
                seen.insert(current)
            }
        }
        #expect(fake.reuseDetections == 0)
        #expect(fake.requestCount("/cis/v1/auth/token/refresh") == 5)
    }

    @Test func aDeadRefreshTokenIsReplacedBySilentReauthentication() async throws {
        let (_, sessionID) = fake.mintSession(userID: "u2")
        try await enroll("u2", refreshToken: "rt-that-the-provider-never-issued", sessionID: sessionID)
        try await runLoop {
            guard case .refreshed(let snapshot) = await refresh("u2") else {
                Issue.record("expected silent re-authentication to succeed")
                return
            }
            #expect(snapshot.state(at: Date()) == .fresh)
            let stored = try #require(try await vault.identity(named: IdentityName("u2")!))
            #expect(fake.isRefreshTokenLive(try #require(stored.secrets.refreshToken?.exposedValue)))
            #expect(stored.secrets.sessionID?.exposedValue == sessionID)
            // And it keeps working with the new refresh token.
            guard case .refreshed = await refresh("u2") else {
                Issue.record("the refresh after re-authentication failed")
                return
            }
        }
        #expect(fake.requestCount("/cis/v1/auth/session/authenticate") == 1)
    }

    @Test func deadTokenAndDeadSessionMeanReauthRequired() async throws {
        let (rt0, sessionID) = fake.mintSession(userID: "u3")
        try await enroll("u3", refreshToken: rt0, sessionID: sessionID)
        let provider = try TransmitProvider(
            settings: TransmitSettings(
                name: "transmit", baseURL: fake.baseURL, clientID: FakeTransmitServer.clientID,
                clientSecret: Secret(FakeTransmitServer.clientSecret), requestTimeout: .seconds(60), allowInsecureHTTP: true),
            http: Self.http)
        try await provider.revokeSessions(userID: "u3")
        try await runLoop {
            guard case .reauthRequired = await refresh("u3") else {
                Issue.record("expected reauth_required")
                return
            }
        }
        #expect(try await vault.identity(named: IdentityName("u3")!)?.record.state == .reauthRequired)
        // One silent re-authentication; its 401 is retried once with a fresh
        // client token (a 401 cannot tell a dead session from an expired
        // client token), and then the engine gives up.
        #expect(fake.requestCount("/cis/v1/auth/session/authenticate") == 2)
        #expect(fake.requestCount("/cis/v1/auth/token/refresh") == 2)
    }
}
