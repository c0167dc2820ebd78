import Testing
import TokendCore

@Suite("Secret never prints its value")
struct SecretTests {
    let secret = Secret("rt-super-secret-value")

    @Test func descriptionIsRedacted() {
        #expect("\(secret)" == "<redacted>")
        #expect(String(describing: secret) == "<redacted>")
        #expect(String(reflecting: secret) == "Secret(<redacted>)")
    }

    @Test func dumpOfAContainingStructIsRedacted() {
        let secrets = IdentitySecrets(refreshToken: secret, accessToken: Secret("at-value"))
        var dumped = ""
        dump(secrets, to: &dumped)
        #expect(!dumped.contains("rt-super-secret-value"))
        #expect(!dumped.contains("at-value"))
        #expect(!"\(secrets)".contains("rt-super-secret-value"))
    }

    @Test func exposedValueIsTheOnlyWayIn() {
        #expect(secret.exposedValue == "rt-super-secret-value")
    }
}
