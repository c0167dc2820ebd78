import Testing
import TokendCore

@Suite("Identity names follow the protocol grammar")
struct IdentityNameTests {
    @Test(arguments: [
        "a", "billing-worker", "user:42@transmit", "svc/team.prod_1", "A9", "x" + String(repeating: "y", count: 127),
    ])
    func accepts(_ name: String) {
        #expect(IdentityName(name)?.rawValue == name)
    }

    @Test(arguments: [
        "", "-leading-dash", ".dot", "has space", "tab\tname", "new\nline", "nul\0", "ümlaut", "semi;colon",
        "x" + String(repeating: "y", count: 128), "a,b", "a=b",
    ])
    func rejects(_ name: String) {
        #expect(IdentityName(name) == nil)
    }

    @Test func ordersByBytesLikeSQLite() {
        let names = ["b", "B", "a:1", "a-1", "a"].compactMap(IdentityName.init)
        #expect(names.sorted().map(\.rawValue) == ["B", "a", "a-1", "a:1", "b"])
    }

    @Test(arguments: [
        (true, true, GrantKind.refreshToken), (true, false, .refreshToken),
        (false, true, .session), (false, false, .clientCredentials),
    ])
    func grantInferenceFollowsTheProtocol(hasRefresh: Bool, hasSession: Bool, expected: GrantKind) {
        #expect(GrantKind.inferred(hasRefreshToken: hasRefresh, hasSessionID: hasSession) == expected)
    }
}
