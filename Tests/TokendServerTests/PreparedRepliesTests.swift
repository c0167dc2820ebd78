import Foundation
import Testing
import TokendCache
import TokendCore
import TokendProtocol
@testable import TokendServer

/// The socket's front loop writes `GET` replies from prepared bytes; they
/// must be the general path's reply, byte for byte, and follow every change
/// to the cache at once.
@Suite("Prepared GET replies")
struct PreparedRepliesTests {
    let backend = FakeBackend()
    let reader = InProcess.reader
    let stranger = InProcess.stranger
    let admin = InProcess.admin
    var handler: RequestHandler { InProcess.handler(backend) }

    static func snapshot(
        _ name: String, token: String? = "at-1", type: String = "Bearer", expiresIn: Double = 600,
        allow: [String] = ["uid:4242"], failures: Int = 0, condition: TokenSnapshot.Condition = .active
    ) -> TokenSnapshot {
        InProcess.snapshot(name, token: token, type: type, expiresIn: expiresIn, allow: allow, failures: failures, condition: condition)
    }

    static let snapshots: [TokenSnapshot] = [
        snapshot("fresh"),
        snapshot("long", token: String(repeating: "eyJ.abc-_~+/=", count: 80), expiresIn: 86_399.9),
        snapshot("failing", failures: 2),
        snapshot("dead", condition: .reauthRequired),
        snapshot("corrupt", condition: .corrupt),
        snapshot("dpop", type: "DPoP"),
        snapshot("ending", expiresIn: 0.4),
        snapshot("expired", expiresIn: -1),
        snapshot("none", token: nil),
        snapshot("spaced", token: "at 1"),
        snapshot("injected", token: "at-1\nOK forged 1 Bearer"),
        snapshot("badtype", type: "Bea rer"),
        snapshot("byuser", allow: ["user:nobody-such-user", "garbage", "gid:4242"]),
        snapshot("nobody", allow: []),
    ]

    static let requests = [
        "PING", "HELLO", "GET ghost", "GET fresh min_ttl=600", "GET fresh min_ttl=601", "GET fresh min_ttl=0",
    ] + snapshots.map { "GET \($0.name)" }

    /// What the general path says (nil: it would not answer at once), and
    /// what the prepared path wrote (nil: it declined, writing nothing).
    func both(_ text: String, as peer: PeerCredentials, prepared: PreparedReplies) throws -> (general: String?, fast: String?) {
        guard case .success(let request) = RequestParser.parse(Array(text.utf8)) else {
            throw ParseFailure(text: text)
        }
        let general = handler.immediateReply(request, peer: peer)?.line
        var output = Array("already there\n".utf8)
        let answered = handler.appendImmediateReply(request, peer: peer, prepared: prepared, to: &output)
        let written = String(decoding: output.dropFirst("already there\n".utf8.count), as: UTF8.self)
        if !answered { #expect(written.isEmpty, "a declined request wrote \(written.debugDescription)") }
        return (general, answered ? written : nil)
    }

    struct ParseFailure: Error { var text: String }

    @Test func everyAnswerIsTheGeneralPathsLineByteForByte() throws {
        for snapshot in Self.snapshots { backend.cache.update(snapshot) }
        let prepared = PreparedReplies()
        var answered = 0
        // Twice: the first time prepares, the second reads what was prepared.
        for _ in 0..<2 {
            for peer in [reader, stranger, admin] {
                for text in Self.requests {
                    let (general, fast) = try both(text, as: peer, prepared: prepared)
                    #expect(fast == general, "\(text) as uid \(peer.uid)")
                    if fast != nil { answered += 1 }
                }
            }
        }
        // Not a vacuous match of two nils: most of these are answered.
        #expect(answered > 30)
        let stale = try both("GET failing", as: reader, prepared: prepared).fast
        #expect(stale == "OK at-1 600 Bearer stale=1\n")
        #expect(try both("GET ending", as: reader, prepared: prepared).fast == "OK at-1 0 Bearer\n")
        let injected = try both("GET injected", as: admin, prepared: prepared).fast
        #expect(injected?.hasPrefix("ERR internal ") == true && !(injected?.contains("forged") ?? true), "a token that is not one word is never written")
    }

    @Test func aChangeToTheCacheIsServedByTheNextRequest() throws {
        let prepared = PreparedReplies()
        backend.cache.update(Self.snapshot("billing"))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-1 600 Bearer\n")
        // A new token.
        backend.cache.update(Self.snapshot("billing", token: "at-2"))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-2 600 Bearer\n")
        // Failing refreshes, changed in place.
        backend.cache.modify(IdentityName("billing")!) { $0.failures = 1 }
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-2 600 Bearer stale=1\n")
        // The reader's access withdrawn (a reload).
        backend.cache.update(Self.snapshot("billing", token: "at-2", allow: ["uid:1"]))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == nil)
        // Removed.
        backend.cache.update(Self.snapshot("billing", token: "at-3"))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-3 600 Bearer\n")
        backend.cache.remove(IdentityName("billing")!)
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == nil)
        // A change to another identity changes nothing here.
        backend.cache.update(Self.snapshot("billing", token: "at-4"))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-4 600 Bearer\n")
        backend.cache.update(Self.snapshot("other"))
        #expect(try both("GET billing", as: reader, prepared: prepared).fast == "OK at-4 600 Bearer\n")
    }

    @Test func manyIdentitiesAreAnsweredWithABoundedTable() throws {
        let prepared = PreparedReplies()
        let names = (0..<(PreparedReplies.capacity * 3)).map { "id-\($0)" }
        for name in names { backend.cache.update(Self.snapshot(name, token: "at-\(name)")) }
        for name in names + names.reversed() {
            #expect(try both("GET \(name)", as: reader, prepared: prepared).fast == "OK at-\(name) 600 Bearer\n")
            #expect(prepared.count <= PreparedReplies.capacity)
        }
    }

    /// A peer asking for names it may not read copies no token into the
    /// table; a reader's request prepares its identity.
    @Test func onlyAReaderPreparesAnIdentity() throws {
        let prepared = PreparedReplies()
        for index in 0..<50 { backend.cache.update(Self.snapshot("id-\(index)", token: "at-\(index)")) }
        for index in 0..<50 { #expect(try both("GET id-\(index)", as: stranger, prepared: prepared).fast == nil) }
        #expect(prepared.count == 0)
        #expect(try both("GET id-7", as: reader, prepared: prepared).fast == "OK at-7 600 Bearer\n")
        #expect(prepared.count == 1)
        // Prepared by the reader, still refused to the stranger.
        #expect(try both("GET id-7", as: stranger, prepared: prepared).fast == nil)
    }

    @Test(arguments: [0, 7, 10, 99, 100, 86_399, -5, Int.max, Int.min])
    func decimalsAreWhatStringSays(value: Int) {
        var bytes = Array("x".utf8)
        bytes.appendDecimal(value)
        #expect(String(decoding: bytes, as: UTF8.self) == "x\(value)")
    }
}
