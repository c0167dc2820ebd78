/// What `REMOVE` ends at the provider besides removing the identity.
package enum Logout: Sendable, Hashable {
    /// Nothing (`logout=0` or no option).
    case none
    /// The identity's session (`logout=1`); refused while other identities
    /// share it, so one app cannot sign the user out of the others unawares.
    case session
    /// The session, also for every identity sharing it (`logout=all`).
    case sharedSession
}
