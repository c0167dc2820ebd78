/// The error codes of protocol v1; programs match on these.
package enum ErrorCode: String, Sendable, Hashable, CaseIterable {
    case badRequest = "bad_request"
    case unknownVerb = "unknown_verb"
    case tooLong = "too_long"
    case forbidden
    case notFound = "not_found"
    case unavailable
    case reauthRequired = "reauth_required"
    case busy
    case shuttingDown = "shutting_down"
    case `internal`
}

/// Why a request line was refused before it reached a handler.
package struct ProtocolError: Error, Sendable, Hashable {
    package var code: ErrorCode
    package var message: String

    package init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
