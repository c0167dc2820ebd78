import Foundation
import Logging
import TokendAgent
import TokendCore
import TokendCache
import TokendEngine
import TokendServer
import TokendTestKit
import TokendVault

/// A running socket server over a real engine, vault and scripted provider,
/// listening on a socket in a fresh temporary directory.
final class ServerFixture: @unchecked Sendable {
    // @unchecked: set up in `start` and only read afterwards.
    let directory: String
    var socketPath: String { directory + "/tokend.sock" }
    let vault: SQLiteVault
    let provider = ScriptedProvider(name: "p")
    let engine: RefreshEngine<ContinuousClock>
    let backend: AgentBackend
    var server: SocketServer!
    let policy: AccessPolicy
    private var tasks: [Task<Void, Never>] = []

    init(
        settings: SocketSettings? = nil, admins: AccessPolicy.Admins = .init(), agentUID: UInt32 = getuid(),
        audit: AuditLog? = nil
    ) async throws {
        directory = "/tmp/tokend-srv-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        vault = try SQLiteVault.create(at: directory + "/vault.db", kek: try KeyEncryptionKey.generate(at: directory + "/vault.key"))
        engine = RefreshEngine(vault: vault, providers: ["p": provider], clock: ContinuousClock())
        backend = AgentBackend(engine: engine)
        var socket = settings ?? SocketSettings()
        socket.path = directory + "/tokend.sock"
        try await engine.start()
        policy = AccessPolicy(admins: admins, agentUID: agentUID)
        server = try await SocketServer(settings: socket, backend: backend, policy: policy, audit: audit)
        let (engine, server) = (engine, server!)
        tasks.append(Task { try? await engine.run() })
        tasks.append(Task { try? await server.run() })
    }

    deinit {
        server?.beginShutdown()
        for task in tasks { task.cancel() }
        try? vault.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Enrolls through the engine, as an admin's ENROLL would.
    func enroll(_ name: String, allow: [String] = [], lifetime: Int? = 3600, token: String = "at-initial") async throws {
        _ = try await engine.enroll(Enrollment(
            name: IdentityName(name)!, provider: "p", allowRules: allow, refreshToken: Secret("rt-0"),
            accessToken: lifetime.map { _ in Secret("\(token)-\(name)") },
            accessTokenExpiresAt: lifetime.map { Date().addingTimeInterval(Double($0)) }))
    }

    func client() throws -> TestClient { try TestClient(path: socketPath) }

    /// One request on a fresh connection.
    func ask(_ line: String) async throws -> String? {
        let path = socketPath
        return try await blocking { try TestClient(path: path).request(line) }
    }
}
