import Foundation
import Testing
import TokendCore
import TokendVault

@Suite("Declared records: what a configuration sync reads instead of every record")
struct VaultDeclaredRecordsTests {
    @Test func theConfigurationsIdentitiesAndTheNamedOnesOnly() async throws {
        let fixture = try VaultFixture()
        let vault = try fixture.create()
        var enrollments = ["cfg-a", "cfg-b", "run-a", "run-b", "run-c"].map { VaultFixture.fullEnrollment($0) }
        enrollments[0].fromConfiguration = true
        enrollments[1].fromConfiguration = true
        try await vault.enroll(batch: enrollments)
        let names = { (records: [IdentityRecord]) in records.map(\.name.rawValue) }
        #expect(names(try await vault.declaredRecords(including: [])) == ["cfg-a", "cfg-b"])
        // A named identity enrolled at run time comes too; a name with no
        // identity matches nothing.
        let asked = ["run-b", "nobody"].map { IdentityName($0)! }
        #expect(names(try await vault.declaredRecords(including: asked)) == ["cfg-a", "cfg-b", "run-b"])
        // The same answer as the protocol's default over every record.
        let everything = try await vault.list(prefix: nil, after: nil, limit: 100)
        #expect(everything.filter { $0.fromConfiguration || asked.contains($0.name) }.map(\.name.rawValue) == ["cfg-a", "cfg-b", "run-b"])
    }
}
