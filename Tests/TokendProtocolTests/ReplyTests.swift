import Testing
import TokendCore
import TokendProtocol

/// A reply is exactly one line, whatever ends up in its fields.
@Suite("Reply rendering")
struct ReplyTests {
    @Test(arguments: ["tok\nOK injected 999 Bearer", "tok en", "tok\r", "tok\u{0}", "", "tök", "tok\u{7F}"])
    func anOKFieldThatIsNotOnePrintableWordBecomesAnInternalError(field: String) {
        let line = Reply.ok([field, "3600", "Bearer"]).line
        #expect(line.hasPrefix("ERR internal "))
        #expect(line.filter { $0 == "\n" }.count == 1 && line.hasSuffix("\n"))
        #expect(!line.contains("injected"))
    }

    @Test func aValidTokenReplyIsRenderedAsIs() {
        #expect(Reply.ok(["eyJ.abc-_~+/=", "3600", "Bearer", "stale=1"]).line == "OK eyJ.abc-_~+/= 3600 Bearer stale=1\n")
        #expect(Reply.ok([]).line == "OK\n")
    }

    @Test func anErrorMessageIsFoldedOntoOneLine() {
        let line = Reply.error(.internal, "a\nb\rc\u{0}d").line
        #expect(line == "ERR internal a b c d\n")
    }
}

@Suite("Reply rendering of hostile text")
struct ReplyTextTests {
    @Test func nonASCIIInAnErrorMessageIsReplaced() {
        #expect(Reply.error(.badRequest, "bad \"ré\u{2028}x\u{85}\"").line == "ERR bad_request bad \"r??x?\"\n")
    }
}
