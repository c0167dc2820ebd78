import Foundation
import TokendCore
import TokendCache
import TokendEngine
import TokendTestKit
import TokendVault

/// A real vault in a temp directory, a manual clock, a scripted provider and
/// an engine over them, with its scheduler loop running.
final class EngineFixture: @unchecked Sendable {
    // @unchecked: fields are set once in init and only read afterwards.
    let directory: String
    let vault: SQLiteVault
    let clock = ManualClock()
    let provider: ScriptedProvider
    /// A second provider ("q"), for identities moved between providers.
    let otherProvider: ScriptedProvider
    /// What the engine writes through: the vault, or a refusal when asked.
    let store: RefusingVault
    var engine: RefreshEngine<ManualClock>!
    private var loop: Task<Void, Never>?

    /// The engine's defaults, less the minimum interval between refreshes
    /// (the tests that are about it set it; the others step the manual
    /// clock in smaller steps than a real agent would see).
    static var defaultSettings: EngineSettings {
        var settings = EngineSettings()
        settings.minimumRefreshInterval = .zero
        return settings
    }

    init(settings: EngineSettings = EngineFixture.defaultSettings, supportsSessions: Bool = false, randomValue: Double = 0) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokend-engine-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        vault = try SQLiteVault.create(at: directory + "/vault.db", kek: try KeyEncryptionKey.generate(at: directory + "/vault.key"))
        provider = ScriptedProvider(name: "p", supportsSessions: supportsSessions, now: clock.wallClock)
        otherProvider = ScriptedProvider(name: "q", now: clock.wallClock)
        store = RefusingVault(vault)
        engine = RefreshEngine(
            vault: store, providers: ["p": provider, "q": otherProvider], clock: clock, wallClock: clock.wallClock,
            random: { randomValue }, settings: settings)
    }

    deinit {
        loop?.cancel()
        try? vault.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var now: Date { clock.wallClock() }

    /// Enrolls `name` with an access token issued now that lives `lifetime` seconds.
    func enroll(_ name: String, lifetime: TimeInterval? = 300, refreshToken: String? = "rt-0", sessionID: String? = nil) async throws {
        try await vault.enroll(Enrollment(
            name: IdentityName(name)!, provider: "p", refreshToken: refreshToken.map(Secret.init),
            sessionID: sessionID.map(Secret.init), accessToken: lifetime.map { _ in Secret("at-initial-\(name)") },
            accessTokenExpiresAt: lifetime.map { now.addingTimeInterval($0) }))
        // The vault stamps issue time with the real clock; align it with the manual one.
        try await vault.commit(RefreshCommit(
            name: IdentityName(name)!, expectedGeneration: 1, accessToken: Secret("at-initial-\(name)"),
            issuedAt: now, expiresAt: now.addingTimeInterval(lifetime ?? -1)))
        if lifetime == nil { try await vault.updateState(IdentityName(name)!, to: .pending, lastError: nil) }
    }

    func start() async throws {
        try await engine.start()
        let engine = engine!
        loop = Task { try? await engine.run() }
    }

    func stop() async {
        loop?.cancel()
        await loop?.value
        loop = nil
    }

    func snapshot(_ name: String) -> TokenSnapshot? { engine.cache.snapshot(IdentityName(name)!) }

    func stored(_ name: String) async throws -> StoredIdentity? { try await vault.identity(named: IdentityName(name)!) }

    /// Advances the clock and waits until the scheduler has reacted: if the
    /// step woke it, until it has turned, gone back to sleep, and finished
    /// the refreshes that turn started. A "no call yet" check after it
    /// means no refresh was due, not that none had started yet.
    func advance(_ seconds: Double) async {
        let step = Duration.milliseconds(Int64(seconds * 1000))
        let engine = engine!
        let before = await engine.turns
        let wakes = clock.wakesSleeper(advancingBy: step)
        clock.advance(by: step)
        guard wakes else { return }
        _ = await eventually {
            let (turns, asleep, statistics) = await (engine.turns, engine.asleep, engine.currentStatistics)
            return turns > before && asleep && statistics.inFlight == 0
        }
    }
}
