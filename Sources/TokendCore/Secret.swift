/// A piece of token material: a refresh token, an access token, a session id
/// or a client secret.
///
/// Why a type of its own: string interpolation, `print`, `dump` and logger
/// metadata all go through `description`, so a secret that is a plain
/// `String` leaks the moment someone logs a struct that holds it. A `Secret`
/// prints as `<redacted>` everywhere; the one way to the value is the
/// explicitly named ``exposedValue``, which is easy to grep for in review.
///
/// ```swift
/// let token = Secret("eyJhbGciOi...")
/// print(token)              // <redacted>
/// request.body = token.exposedValue
/// ```
package struct Secret: Sendable, Hashable {
    /// The plaintext. Read it only to send it to its one destination
    /// (a provider request, a socket reply, the sealing code).
    package let exposedValue: String

    package init(_ value: String) {
        self.exposedValue = value
    }

    /// True when the secret holds no characters (treated as "absent" by callers).
    package var isEmpty: Bool { exposedValue.isEmpty }
}

extension Secret: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    package var description: String { "<redacted>" }
    package var debugDescription: String { "Secret(<redacted>)" }
    // `dump()` and debuggers walk children through Mirror; give them none.
    package var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
