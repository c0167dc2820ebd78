import Foundation
import Synchronization
import Testing
import TokendCore
import TokendServer
import TokendTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The socket's front loop: lines cut anywhere by the client, lines at the
/// length limit, replies the kernel will not take at once, and the moment a
/// connection moves to an event loop with bytes read or replies unsent.
@Suite("Socket front loop: framing and hand-over")
struct FrontLoopTests {
    /// The same 300 pipelined requests, sent in pieces cut at random
    /// places (one byte at a time included): every reply, in order.
    @Test(arguments: [1, 2, 3, 7, 64, 1000])
    func linesCutAnywhereAreAnsweredInOrder(largestPiece: Int) async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("a")
        var text = ""
        for index in 0..<300 { text += ["GET a\n", "PING\n", "GET nobody\n", "HELLO\n"][index % 4] }
        let bytes = Array(text.utf8)
        let client = try fixture.client()
        let replies = try await blocking { () -> [String?] in
            var generator = SystemRandomNumberGenerator()
            var offset = 0
            while offset < bytes.count {
                let piece = min(bytes.count - offset, Int.random(in: 1...largestPiece, using: &generator))
                client.sendBytes(Array(bytes[offset..<offset + piece]))
                offset += piece
                if piece < 8 { usleep(200) }  // so the pieces arrive as separate reads
            }
            return (0..<300).map { _ in client.readLine() }
        }
        for (index, reply) in replies.enumerated() {
            switch index % 4 {
            case 0: #expect(isToken(reply, "at-initial-a"), "reply \(index): \(reply ?? "nil")")
            case 1: #expect(reply == "OK PONG", "reply \(index)")
            case 2: #expect(reply == "ERR not_found no identity nobody", "reply \(index)")
            default: #expect(reply?.hasPrefix("OK tokend proto=1") == true, "reply \(index)")
            }
        }
    }

    /// 4096 bytes with the newline is a line; one more is too long, with or
    /// without its newline, and the connection is closed after saying so.
    @Test func theLengthLimitIsExactWhateverTheReadsLookLike() async throws {
        let fixture = try await ServerFixture()
        let limit = 4096
        let longest = "GET " + String(repeating: "a", count: limit - 5) + "\n"
        #expect(longest.utf8.count == limit)
        for split in [0, 1, 2048, limit - 1] {
            let client = try fixture.client()
            let reply = try await blocking { () -> String? in
                let bytes = Array(longest.utf8)
                client.sendBytes(Array(bytes[..<split]))
                usleep(2_000)
                client.sendBytes(Array(bytes[split...]))
                return client.readLine()
            }
            // A valid line: answered (the name is over the name limit).
            #expect(reply?.hasPrefix("ERR bad_request") == true, "split at \(split): \(reply ?? "nil")")
            #expect(try await blocking { client.request("PING") } == "OK PONG")
        }
        for line in ["GET " + String(repeating: "a", count: limit - 4) + "\n", String(repeating: "b", count: limit)] {
            let client = try fixture.client()
            let (reply, closed) = try await blocking { () -> (String?, Bool) in
                client.send("PING\n" + line)
                return (client.readLine().flatMap { _ in client.readLine() }, client.isClosedByServer())
            }
            #expect(reply?.hasPrefix("ERR too_long") == true, "\(line.utf8.count) bytes: \(reply ?? "nil")")
            #expect(closed)
        }
        #expect(try await fixture.ask("PING") == "OK PONG")
    }

    /// 3,000 pipelined requests answered by about 1.4 MB, more than the socket
    /// holds, to a client that reads only after sending them all: the
    /// front loop's write comes up short, the connection moves to an event
    /// loop with the unsent replies and the unanswered lines, and the
    /// client gets every reply, whole and in order.
    @Test func repliesTheKernelWillNotTakeAtOnceAreSentWholeAndInOrder() async throws {
        let fixture = try await ServerFixture()
        let token = String(repeating: "t", count: 900)
        try await fixture.enroll("big", token: token)
        let client = try fixture.client()
        let replies = try await blocking { () -> [String?] in
            client.send(String(repeating: "GET big\nPING\n", count: 1500))
            usleep(300_000)  // the server fills the socket and waits
            var replies = (0..<3000).map { _ in client.readLine() }
            replies.append(client.request("GET big"))
            return replies
        }
        #expect(replies.count == 3001)
        var wrong = 0
        for (index, reply) in replies.enumerated() {
            if index % 2 == 0 ? !isToken(reply, token + "-big") : reply != "OK PONG" { wrong += 1 }
        }
        #expect(wrong == 0, "\(wrong) replies out of order or damaged")
    }

    /// A request that waits moves the connection to an event loop; what
    /// the client sent after it, in the same write, is answered there.
    /// The connection is counted once throughout, and not at all after.
    @Test func aConnectionHandedOverIsCountedOnceAndServedToTheEnd() async throws {
        let fixture = try await ServerFixture()
        try await fixture.enroll("a")
        fixture.provider.setDelay(.milliseconds(200))
        var clients = try (0..<20).map { _ in try fixture.client() }
        let replies = try await withThrowingTaskGroup(of: [String?].self) { group in
            for client in clients {
                group.addTask {
                    try await blocking {
                        client.send("PING\nREFRESH a\nGET a\nPING\n")
                        return (0..<4).map { _ in client.readLine() }
                    }
                }
            }
            #expect(try await eventually { fixture.server.connectionCount == 20 })
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for reply in replies {
            #expect(reply[0] == "OK PONG")
            #expect(reply[1]?.hasPrefix("OK at-p-") == true || reply[1]?.hasPrefix("ERR ") == true, "\(reply)")
            #expect(reply[2]?.hasPrefix("OK at-") == true, "\(reply)")
            #expect(reply[3] == "OK PONG")
        }
        #expect(fixture.server.connectionCount == 20)
        // After the hand-over the event loop serves the quick path too.
        do {
            let first = clients[0]
            #expect(try await blocking { first.request("PING") } == "OK PONG")
        }
        clients = []
        #expect(try await eventually { fixture.server.connectionCount == 0 }, "\(fixture.server.connectionCount) left")
    }

    /// The client shuts its write side after a line and half of another:
    /// the whole line is answered, the rest dropped, and the connection
    /// closed.
    @Test func aHalfClosedClientIsAnsweredThenClosed() async throws {
        let fixture = try await ServerFixture()
        let client = try fixture.client()
        let (reply, closed) = try await blocking { () -> (String?, Bool) in
            client.send("PING\nPIN")
            shutdown(client.fd, Int32(SHUT_WR))
            return (client.readLine(), client.isClosedByServer())
        }
        #expect(reply == "OK PONG")
        #expect(closed)
        #expect(try await eventually { fixture.server.connectionCount == 0 })
    }

    /// The loop's thread is named, for `top -H` and `/proc/<pid>/task`.
    @Test func theLoopThreadIsNamed() async throws {
        let fixture = try await ServerFixture()
        #expect(try await fixture.ask("PING") == "OK PONG")
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        #expect(names.contains("tokend-socket\n"), "\(names.count) threads")
    }

    /// Idle connections in the front loop are closed after the idle time,
    /// and only they: a connection that keeps talking is never closed at
    /// the check that closes a quiet one.
    @Test func idleConnectionsInTheFrontAreClosedAndOnlyThey() async throws {
        let fixture = try await ServerFixture(settings: SocketSettings(idleTimeout: .seconds(3)))
        let quiet = try fixture.client()
        let talking = try fixture.client()
        // A PING every 250 ms for 4.5 s: never 3 s quiet, unless this
        // machine starves the test for seconds.
        let answers = try await blocking { () -> [String?] in
            (0..<18).map { _ in
                usleep(250_000)
                return talking.request("PING")
            }
        }
        #expect(answers.allSatisfy { $0 == "OK PONG" }, "\(answers)")
        #expect(try await blocking { quiet.isClosedByServer() })
        #expect(try await blocking { talking.request("PING") } == "OK PONG")
    }
}

/// `OK <token> <seconds> Bearer`: the seconds count down while a test runs.
private func isToken(_ reply: String?, _ token: String) -> Bool {
    guard let fields = reply?.split(separator: " ", omittingEmptySubsequences: false), fields.count == 4 else { return false }
    return fields[0] == "OK" && fields[1] == token && Int(fields[2]) != nil && fields[3] == "Bearer"
}
