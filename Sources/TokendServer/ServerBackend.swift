import TokendCore
import TokendCache
import TokendProtocol

/// What the socket server needs from the rest of the agent. The agent
/// implements it over the engine, the vault and the providers; tests can
/// use the same real parts.
package protocol ServerBackend: Sendable {
    /// The in-memory token table; `GET` reads only this.
    var cache: TokenCache { get }

    /// Refreshes (or joins the refresh in flight); see ``RefreshEngine``.
    /// `urgent` puts it ahead of scheduled refreshes (admins only).
    func refresh(_ name: IdentityName, force: Bool, minimumTTL: Double, urgent: Bool) async -> RefreshOutcome

    /// Enrolls or re-enrolls; returns the new generation.
    func enroll(_ request: EnrollRequest) async throws(BackendError) -> Int64

    /// Removes an identity, ending its provider session first if asked.
    /// Returns false if it did not exist.
    func remove(_ name: IdentityName, logout: Logout) async throws(BackendError) -> Bool

    /// Re-reads the configuration; returns the number of identities.
    func reload() async throws(BackendError) -> Int

    /// The identities of a shared session, for `STATUS`.
    func sessionMembers(_ group: String) async -> [IdentityName]

    /// Engine counters for `STATS`.
    func statistics() async -> EngineStatistics
}

/// A refused admin operation, with the wire error code to answer.
package struct BackendError: Error, Sendable {
    package var code: ErrorCode
    package var message: String

    package init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
