import Foundation
import Synchronization
import Testing
import TokendCore
import TokendServer
import TokendTestKit

/// Every verb and framing rule over a real Unix socket.
@Suite("Socket server: protocol v1 over a real socket")
struct SocketServerTests {
    @Test func everyVerbAnswersAsThProtocolSays() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("billing", lifetime: 3600)
        #expect(try await fixture.ask("PING") == "OK PONG")
        #expect(try await fixture.ask("hello") == "OK tokend proto=1 version=\(TokendVersion.current)")
        let get = try #require(try await fixture.ask("GET billing"))
        #expect(get.hasPrefix("OK at-initial-billing 35"))
        #expect(get.hasSuffix(" Bearer"))
        let status = try #require(try await fixture.ask("STATUS billing"))
        #expect(status.hasPrefix("OK state=fresh expires_in=35"))
        #expect(status.contains("failures=0 provider=p generation=1"))
        #expect(try await fixture.ask("GET nobody") == "ERR not_found no identity nobody")
        #expect(try await fixture.ask("FETCH x")?.hasPrefix("ERR unknown_verb") == true)
        #expect(try await fixture.ask("GET bad name")?.hasPrefix("ERR bad_request") == true)

        // GET min_ttl: refreshes first when less time remains.
        let refreshed = try #require(try await fixture.ask("GET billing min_ttl=7200"))
        // The provider grants 300 s; a loaded CI machine may spend a second or two before the reply.
        let refreshedFields = refreshed.split(separator: " ")
        #expect(refreshedFields.count == 4 && refreshedFields[1] == "at-p-1" && refreshedFields[3] == "Bearer")
        let refreshedTTL = refreshedFields.count == 4 ? Int(refreshedFields[2]) : nil
        #expect(refreshedTTL.map { (290...300).contains($0) } == true, "expires_in \(refreshed)")
        #expect(fixture.provider.callCount == 1)
        let forced = try #require(try await fixture.ask("REFRESH billing"))
        #expect(forced.hasPrefix("OK at-p-2 "))

        let enroll = try #require(try await fixture.ask("ENROLL fresh-one provider=p refresh_token=rt-x allow=uid:1234"))
        #expect(enroll == "OK enrolled generation=1")
        #expect(try await eventually { (try? await fixture.ask("GET fresh-one"))?.hasPrefix("OK at-p-") == true })
        #expect(try await fixture.ask("ENROLL x provider=nope refresh_token=r") == "ERR bad_request unknown provider nope")

        let stats = try #require(try await fixture.ask("STATS"))
        #expect(stats.hasPrefix("OK identities=2 fresh=2 stale=0 expired=0 reauth_required=0"))
        #expect(try await fixture.ask("REMOVE fresh-one") == "OK removed")
        #expect(try await fixture.ask("REMOVE fresh-one") == "ERR not_found no identity fresh-one")
        #expect(try await fixture.vault.identity(named: IdentityName("fresh-one")!) == nil)

        let client = try fixture.client()
        let (bye, closed) = try await blocking { (client.request("QUIT"), client.isClosedByServer()) }
        #expect(bye == "OK BYE")
        #expect(closed)
    }

    @Test func listPaginates() async throws {
        let fixture = try await ServerFixture()
        for index in 0..<5 { try await fixture.enroll("svc-\(index)") }
        try await fixture.enroll("other")
        #expect(try await fixture.ask("LIST prefix=svc- limit=2") == "OK 2 svc-0 svc-1 next=svc-1")
        #expect(try await fixture.ask("LIST prefix=svc- after=svc-1 limit=2") == "OK 2 svc-2 svc-3 next=svc-3")
        #expect(try await fixture.ask("LIST prefix=svc- after=svc-3 limit=2") == "OK 1 svc-4")
        #expect(try await fixture.ask("LIST") == "OK 6 other svc-0 svc-1 svc-2 svc-3 svc-4")
    }

    @Test func aThousandPipelinedRequestsAreAnsweredInOrder() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("a")
        let client = try fixture.client()
        let replies = try await blocking { () -> [String] in
            var batch = ""
            for index in 0..<1000 { batch += index % 2 == 0 ? "PING\n" : "STATUS nope-\(index)\n" }
            client.send(batch)
            return (0..<1000).compactMap { _ in client.readLine() }
        }
        #expect(replies.count == 1000)
        for (index, reply) in replies.enumerated() {
            #expect(reply == (index % 2 == 0 ? "OK PONG" : "ERR not_found no identity nope-\(index)"))
        }
    }

    @Test func quickAnswersNeverOvertakeASlowRequest() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("a")
        fixture.provider.setDelay(.milliseconds(300))
        let client = try fixture.client()
        // The first GET waits for a refresh; the GET and PING behind it could
        // be answered at once, but must come after it, in order.
        let replies = try await blocking { () -> [String?] in
            client.send("GET a min_ttl=999999\nGET a\nPING\n")
            return [client.readLine(), client.readLine(), client.readLine()]
        }
        #expect(replies[0]?.hasPrefix("OK at-p-1 ") == true, "\(replies)")
        #expect(replies[1]?.hasPrefix("OK at-p-1 ") == true, "the second GET sees the refreshed token")
        #expect(replies[2] == "OK PONG")
    }

    @Test func anOverlongLineGetsTooLongAndTheConnectionCloses() async throws {
        let fixture = try await ServerFixture()
        let client = try fixture.client()
        let (reply, closed) = try await blocking { () -> (String?, Bool) in
            client.send("GET " + String(repeating: "x", count: 5000) + "\n")
            return (client.readLine(), client.isClosedByServer())
        }
        #expect(reply?.hasPrefix("ERR too_long") == true)
        #expect(closed)
        #expect(try await fixture.ask("PING") == "OK PONG", "the agent is fine")
    }

    @Test func nulAndInvalidUTF8AreRejectedAndTheConnectionGoesOn() async throws {
        let fixture = try await ServerFixture()
        let client = try fixture.client()
        let replies = try await blocking { () -> [String?] in
            client.sendBytes(Array("GET a\u{0}b\n".utf8))
            let first = client.readLine()
            client.sendBytes([0x47, 0x45, 0x54, 0x20, 0xC3, 0x28, 0x0A])
            let second = client.readLine()
            return [first, second, client.request("PING")]
        }
        #expect(replies[0]?.hasPrefix("ERR bad_request NUL") == true)
        #expect(replies[1] == "ERR bad_request request is not valid UTF-8")
        #expect(replies[2] == "OK PONG")
    }

    @Test func slowAndHalfOpenClientsDoNotBlockOthers() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("a")
        let slow = try fixture.client()
        let silent = try fixture.client()
        silent.send("GET a")  // never finishes its line
        // 80 bytes, one every 100 ms: 8 s for one request.
        let line = Array(("PING" + String(repeating: " ", count: 75) + "\n").utf8)
        let slowDone = Mutex(false)
        let slowReply = Task {
            try await blocking { () -> String? in
                for byte in line {
                    slow.sendBytes([byte])
                    usleep(100_000)
                }
                slowDone.withLock { $0 = true }
                return slow.readLine()
            }
        }
        for _ in 0..<5 { #expect(try await fixture.ask("PING") == "OK PONG") }
        #expect(slowDone.withLock { !$0 }, "others were served while the slow client was still dribbling")
        #expect(try await slowReply.value == "OK PONG")
        _ = silent
    }

    @Test func connectionsBeyondTheLimitGetBusyAndTheAgentStaysUp() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(maxConnections: 1024, maxConnectionsPerUID: 100_000))
        let path = fixture.socketPath
        let (busy, served) = try await blocking { () -> (Int, Int) in
            var clients: [TestClient] = []
            var busy = 0
            for _ in 0..<2000 {
                guard let client = try? TestClient(path: path, receiveTimeout: 5) else { continue }
                clients.append(client)
            }
            var served = 0
            for client in clients {
                client.send("PING\n")
                switch client.readLine() {
                case "OK PONG": served += 1
                case let line? where line.hasPrefix("ERR busy"): busy += 1
                default: break
                }
            }
            return (busy, served)
        }
        #expect(served == 1024)
        #expect(busy == 2000 - 1024)
        #expect(try await eventually { fixture.server.connectionCount == 0 })
        #expect(try await fixture.ask("PING") == "OK PONG")
    }

    @Test func watchPushesEveryChangeAndEndsOnRemoval() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("w")
        let client = try fixture.client()
        let first = try await blocking { client.request("WATCH w") }
        #expect(first?.hasPrefix("OK at-initial-w ") == true)
        _ = try await fixture.ask("REFRESH w")
        let second = try await blocking { client.readLine() }
        #expect(second?.hasPrefix("OK at-p-1 ") == true)
        _ = try await fixture.ask("REMOVE w")
        let last = try await blocking { (client.readLine(), client.isClosedByServer()) }
        #expect(last.0 == "ERR forbidden identity w was removed")
        #expect(last.1)
        #expect(try await eventually { fixture.engine.cache.watcherCount == 0 })
    }

    @Test func idleConnectionsAreClosedButWatchersAreNot() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(idleTimeout: .seconds(1)))
        try await fixture.enroll("w")
        let watcher = try fixture.client()
        #expect(try await blocking { watcher.request("WATCH w") }?.hasPrefix("OK at-initial-w") == true)
        let idle = try fixture.client()
        try await Task.sleep(for: .milliseconds(2500))
        #expect(try await blocking { idle.isClosedByServer() })
        _ = try await fixture.ask("REFRESH w")
        let pushed = try await blocking { watcher.readLine() }
        #expect(pushed?.hasPrefix("OK at-p-1") == true, "got \(pushed ?? "nil")")
    }

    @Test func shutdownTellsWatchersAndRemovesTheSocket() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("w")
        let watcher = try fixture.client()
        _ = try await blocking { watcher.request("WATCH w") }
        fixture.server.beginShutdown()
        #expect(try await blocking { watcher.readLine() } == "ERR shutting_down agent is stopping")
        #expect(try await eventually { !FileManager.default.fileExists(atPath: fixture.socketPath) })
    }

    /// A watcher that stops reading cannot hold the agent's shutdown: its
    /// `ERR shutting_down` cannot be written, so it is closed without it.
    @Test func aWatcherThatStopsReadingDoesNotHoldTheShutdown() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("w")
        let watcher = try fixture.client()
        #expect(try await blocking { watcher.request("WATCH w") }?.hasPrefix("OK at-initial-w") == true)
        // The watcher reads nothing more; 640 KB of new tokens fill the
        // socket's buffer and the pushes behind it wait.
        // (Re-enrollments: forced refreshes are spaced by the engine.)
        for round in 0..<200 {
            try await fixture.enroll("w", token: "t\(round)-" + String(repeating: "x", count: 16_000))
        }
        fixture.server.beginShutdown()
        #expect(await eventually(timeout: .seconds(8)) { fixture.server.connectionCount == 0 })
        #expect(await eventually { !FileManager.default.fileExists(atPath: fixture.socketPath) }, "the server stopped")
        withExtendedLifetime(watcher) {}
    }

    /// Connections accepted while the server stops (some closed before
    /// they ever became active) all leave the registry, so it stops.
    @Test func aShutdownDuringAConnectStormStillStops() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(maxConnections: 4096, maxConnectionsPerUID: 4096))
        let path = fixture.socketPath
        let connected = ConnectCount()
        // Four clients connect as fast as they can until the socket is gone
        // (at most 200 each); the shutdown fires in the middle of it.
        let storm = Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try? await blocking {
                            for _ in 0..<200 {
                                guard let client = try? TestClient(path: path, receiveTimeout: 2) else { return }
                                client.send("PING\n")
                                connected.value.add(1, ordering: .relaxed)
                            }
                        }
                    }
                }
            }
        }
        #expect(await eventually { connected.value.load(ordering: .relaxed) >= 100 })
        fixture.server.beginShutdown()
        await storm.value
        #expect(await eventually { fixture.server.connectionCount == 0 })
        #expect(await eventually { !FileManager.default.fileExists(atPath: path) }, "the server stopped")
    }

    @Test func theSocketIsBornPrivateAndALiveAgentIsNotReplaced() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(mode: 0o660))
        let attributes = try FileManager.default.attributesOfItem(atPath: fixture.socketPath)
        #expect(attributes[.posixPermissions] as? Int == 0o660)
        let backend = fixture.backend
        await #expect(throws: (any Error).self) {
            _ = try await SocketServer(
                settings: SocketSettings(path: fixture.socketPath), backend: backend, policy: AccessPolicy())
        }
        #expect(try await fixture.ask("PING") == "OK PONG", "the running agent kept its socket")
    }
}

/// Connections a storm of clients made so far.
private final class ConnectCount: Sendable {
    let value = Atomic<Int>(0)
}
