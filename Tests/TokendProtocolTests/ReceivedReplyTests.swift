import Testing
import TokendCore
import TokendProtocol

@Suite("Reply lines as a client reads them")
struct ReceivedReplyTests {
    @Test func whatTheAgentRendersTheClientReadsBack() {
        let token = Reply.ok(["at-1", "300", "Bearer", "stale=1"]).line.dropLast()
        let read = ReceivedReply(line: String(token))
        #expect(read == .ok(["at-1", "300", "Bearer", "stale=1"]))
        #expect(read?.token?.value == "at-1" && read?.token?.expiresIn == 300 && read?.token?.type == "Bearer")
        #expect(read?.options == ["stale": "1"])

        let refused = Reply.error(.unavailable, "no valid token for a: no token yet", fields: ["retry_after=7"]).line.dropLast()
        let error = ReceivedReply(line: String(refused))
        #expect(error == .error(code: "unavailable", detail: "no valid token for a: no token yet retry_after=7"))
        #expect(error?.options["retry_after"] == "7")
        #expect(error?.token == nil)
    }

    @Test(arguments: ["", " ", "ok a 1 B", "ERR", "HELLO there", "OKAY 1 2 3", "\u{0}OK a 1 B"])
    func aLineThatIsNoReplyIsRefused(line: String) {
        #expect(ReceivedReply(line: line) == nil)
    }

    @Test func anOKThatIsNoTokenHasNoToken() {
        #expect(ReceivedReply(line: "OK PONG")?.token == nil)
        #expect(ReceivedReply(line: "OK at-1 soon Bearer")?.token == nil)
        // A negative lifetime from a broken agent never goes below zero.
        #expect(ReceivedReply(line: "OK at-1 -5 Bearer")?.token?.expiresIn == 0)
        #expect(ReceivedReply(line: "OK a=b c =d e=")?.options == ["a": "b", "": "d", "e": ""])
    }
}
