import Foundation
import Synchronization
import Testing
import TokendCache
import TokendCore
import TokendProtocol
import TokendServer

/// A backend whose answers each test decides: the request handler's logic
/// (access, waiting, error mapping) without an engine, a vault or a socket.
/// The live tier (a real engine behind a real socket) is in the other suites.
final class FakeBackend: ServerBackend {
    let cache = TokenCache()
    private let state = Mutex(State())

    struct State {
        var refreshOutcome: RefreshOutcome?
        var refreshCalls: [(name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool)] = []
        var enrollFailure: BackendError?
        var enrolled: [EnrollRequest] = []
        var removed: [(IdentityName, Logout)] = []
        var reloads = 0
    }

    /// What the next refreshes return; nil makes them never return.
    func answerRefreshes(with outcome: RefreshOutcome?) { state.withLock { $0.refreshOutcome = outcome } }
    func refuseEnrollments(_ error: BackendError) { state.withLock { $0.enrollFailure = error } }
    var calls: State { state.withLock { $0 } }

    func refresh(_ name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool) async -> RefreshOutcome {
        let outcome = state.withLock { state in
            state.refreshCalls.append((name, force, minimumTTL, urgent))
            return state.refreshOutcome
        }
        if let outcome { return outcome }
        // A refresh that never ends (a provider that hangs): only the
        // handler's own wait limit gets the client an answer.
        while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        return .notFound
    }

    func enroll(_ request: EnrollRequest) async throws(BackendError) -> Int64 {
        let failure = state.withLock { state in
            state.enrolled.append(request)
            return state.enrollFailure
        }
        if let failure { throw failure }
        return 7
    }

    func remove(_ name: IdentityName, logout: Logout) async throws(BackendError) -> Bool {
        state.withLock { $0.removed.append((name, logout)) }
        return cache.snapshot(name) != nil
    }

    func reload() async throws(BackendError) -> Int {
        state.withLock { $0.reloads += 1 }
        return cache.count
    }

    func sessionMembers(_ group: String) async -> [IdentityName] {
        cache.all().filter { $0.sessionGroup == group }.map(\.name).sorted()
    }

    func statistics() async -> EngineStatistics { EngineStatistics() }
}

@Suite("Request handler, in process")
struct RequestHandlerTests {
    static let now = InProcess.now
    let backend = FakeBackend()
    let reader = InProcess.reader
    let stranger = InProcess.stranger
    let admin = InProcess.admin

    func handler(refreshWait: Duration = .seconds(5)) -> RequestHandler {
        InProcess.handler(backend, refreshWait: refreshWait)
    }

    func snapshot(
        _ name: String, token: String? = "at-1", expiresIn: Double = 600, allow: [String] = ["uid:4242"], failures: Int = 0,
        session: String? = nil
    ) -> TokenSnapshot {
        InProcess.snapshot(name, token: token, expiresIn: expiresIn, allow: allow, failures: failures, session: session)
    }

    func line(_ request: String, as peer: PeerCredentials, refreshWait: Duration = .seconds(5)) async -> String {
        switch await handler(refreshWait: refreshWait).handle(RequestParser.parse(Array(request.utf8)), peer: peer) {
        case .reply(let reply), .close(let reply), .watch(_, let reply): reply.line
        }
    }

    @Test func aReaderGetsItsTokenAndNobodyLearnsWhichNamesExist() async {
        backend.cache.update(snapshot("billing"))
        #expect(await line("GET billing", as: reader) == "OK at-1 600 Bearer\n")
        let refused = await line("GET billing", as: stranger)
        #expect(refused.hasPrefix("ERR forbidden "))
        // An unknown name looks the same to a reader; an admin is told.
        #expect(await line("GET ghost", as: stranger) == refused)
        #expect(await line("GET ghost", as: admin).hasPrefix("ERR not_found "))
    }

    @Test func adminVerbsNeverReachTheBackendForAReader() async {
        backend.cache.update(snapshot("billing"))
        for request in ["ENROLL x provider=p refresh_token=r", "REMOVE billing", "RELOAD", "REFRESH billing"] {
            #expect(await line(request, as: reader).hasPrefix("ERR forbidden "), "\(request)")
        }
        let calls = backend.calls
        #expect(calls.enrolled.isEmpty && calls.removed.isEmpty && calls.reloads == 0 && calls.refreshCalls.isEmpty)
    }

    @Test func aRefusedEnrollmentKeepsTheBackendsCodeAndMessage() async {
        backend.refuseEnrollments(BackendError(.badRequest, "unknown provider q"))
        #expect(await line("ENROLL x provider=q refresh_token=r", as: admin) == "ERR bad_request unknown provider q\n")
        backend.refuseEnrollments(BackendError(.internal, "the vault refused the enrollment; see the agent's log"))
        #expect(await line("ENROLL x provider=p refresh_token=r", as: admin).hasPrefix("ERR internal "))
        #expect(backend.calls.enrolled.map(\.name.rawValue) == ["x", "x"])
    }

    @Test func aReadersMinTTLIsCappedAtHalfTheLifetimeAndWaitsForTheRefresh() async throws {
        // A huge min_ttl from a reader is capped: the token has 100 s left
        // of 160 (issued 60 s ago), so it asks for 80 and gets this token.
        backend.cache.update(snapshot("billing", expiresIn: 100))
        #expect(await line("GET billing min_ttl=100000", as: reader) == "OK at-1 100 Bearer\n")
        #expect(backend.calls.refreshCalls.isEmpty)
        // 50 s left of 110: under half, so it waits for the refresh.
        backend.cache.update(snapshot("billing", expiresIn: 50))
        var renewed = snapshot("billing", token: "at-2", expiresIn: 3600)
        renewed.generation = 2
        backend.answerRefreshes(with: .refreshed(renewed))
        #expect(await line("GET billing min_ttl=100000", as: reader) == "OK at-2 3600 Bearer\n")
        let call = try #require(backend.calls.refreshCalls.first)
        #expect(call.minimumTTL == 55)
        #expect(!call.force && !call.urgent, "a reader's refresh waits its turn")
    }

    @Test func aRefreshThatNeverEndsIsBoundedByTheWaitAndTheValidTokenStillServed() async {
        backend.cache.update(snapshot("billing", expiresIn: 100))
        backend.answerRefreshes(with: nil)
        #expect(await line("GET billing min_ttl=50", as: reader, refreshWait: .milliseconds(50)) == "OK at-1 100 Bearer\n")
        backend.cache.update(snapshot("empty", token: nil))
        let none = await line("GET empty", as: reader, refreshWait: .milliseconds(50))
        #expect(none.hasPrefix("ERR unavailable no valid token for empty: no token yet retry_after="), "\(none)")
    }

    @Test func aFailingTokenIsServedAsStaleAndAnExpiredOneNever() async {
        backend.cache.update(snapshot("billing", expiresIn: 100, failures: 3))
        #expect(await line("GET billing", as: reader) == "OK at-1 100 Bearer stale=1\n")
        backend.cache.update(snapshot("billing", expiresIn: -1, failures: 3))
        #expect(await line("GET billing", as: reader).hasPrefix("ERR unavailable "))
    }

    @Test func statusNamesSessionPartnersOnlyToAdmins() async {
        backend.cache.update(snapshot("app1", session: "s-ref"))
        backend.cache.update(snapshot("app2", session: "s-ref"))
        let asReader = await line("STATUS app1", as: reader)
        #expect(asReader.contains("session=s-ref session_identities=2"))
        #expect(!asReader.contains("app2"))
        #expect(await line("STATUS app1", as: admin).contains("session_with=app1,app2"))
    }

    @Test func statsCountsWhatTheCacheHolds() async {
        backend.cache.update(snapshot("a"))
        backend.cache.update(snapshot("b", failures: 1))
        backend.cache.update(snapshot("c", token: nil))
        let stats = await line("STATS", as: admin)
        for field in ["identities=3", "fresh=1", "stale=1", "pending=1", "servable=2", "failing=1"] {
            #expect(stats.contains(field), "\(field) in \(stats)")
        }
    }

    @Test func aLineThatDoesNotParseIsAnsweredWithoutTheBackend() async {
        #expect(await line("GET", as: admin).hasPrefix("ERR bad_request "))
        #expect(await line("FROB x", as: admin).hasPrefix("ERR "))
        #expect(backend.calls.refreshCalls.isEmpty)
    }
}
