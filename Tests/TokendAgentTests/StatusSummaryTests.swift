import Testing
import TokendCore
@testable import TokendAgent

@Suite("sd_notify STATUS text")
struct StatusSummaryTests {
    @Test func oneIdentityIsSingular() {
        #expect(NotifyService.summary([.fresh: 1]) == "1 identity: 1 fresh")
    }

    @Test func noIdentityIsPluralWithoutStates() {
        #expect(NotifyService.summary([:]) == "0 identities")
    }

    @Test func manyIdentitiesListStatesInAFixedOrder() {
        #expect(
            NotifyService.summary([.reauthRequired: 1, .stale: 1, .fresh: 40])
                == "42 identities: 40 fresh, 1 stale, 1 reauth_required")
    }
}
