import Testing
import TokendCore
@testable import TokendProtocol

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

    /// The word-at-a-time check against the plain one, over every byte
    /// value at every position of words and tails.
    @Test func thePrintableCheckAgreesWithThePlainOneForEveryByte() {
        for length in 1...19 {
            for position in 0..<length {
                for value in 0...255 {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[position] = UInt8(value)
                    let expected = value > 0x20 && value < 0x7F
                    #expect(bytes.withUnsafeBytes { Reply.isPrintableASCII($0) } == expected, "\(value) at \(position) of \(length)")
                }
            }
        }
        // Neighbours of a bad byte cannot hide it through a borrow or carry.
        for pair: [UInt8] in [[0x00, 0xFF], [0xFF, 0x00], [0x7F, 0x21], [0x21, 0x20], [0x80, 0x7E]] {
            var bytes = [UInt8](repeating: 0x41, count: 16)
            bytes.replaceSubrange(3..<5, with: pair)
            #expect(bytes.withUnsafeBytes { Reply.isPrintableASCII($0) } == false)
        }
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
