import Foundation
import TokendCore

/// A parsed request line of protocol v1 (docs/PROTOCOL.md).
package enum Request: Sendable, Hashable {
    case ping
    case hello
    case get(IdentityName, minimumTTL: Int?)
    case status(IdentityName)
    case list(prefix: String?, after: IdentityName?, limit: Int?)
    case watch(IdentityName)
    case quit
    case enroll(EnrollRequest)
    case refresh(IdentityName)
    case remove(IdentityName, logout: Logout)
    case reload
    case stats

    /// The verb as written on the wire (upper case), for logs and audit.
    package var verb: String {
        switch self {
        case .ping: "PING"
        case .hello: "HELLO"
        case .get: "GET"
        case .status: "STATUS"
        case .list: "LIST"
        case .watch: "WATCH"
        case .quit: "QUIT"
        case .enroll: "ENROLL"
        case .refresh: "REFRESH"
        case .remove: "REMOVE"
        case .reload: "RELOAD"
        case .stats: "STATS"
        }
    }

    /// Verbs only admin peers may use.
    package var isAdmin: Bool {
        switch self {
        case .enroll, .refresh, .remove, .reload, .stats: true
        default: false
        }
    }

    /// The identity the request is about, if any.
    package var identity: IdentityName? {
        switch self {
        case .get(let name, _), .status(let name), .watch(let name), .refresh(let name), .remove(let name, _): name
        case .enroll(let request): request.name
        default: nil
        }
    }
}

/// `ENROLL <identity> provider=<name> ...`: secrets arrive only here.
package struct EnrollRequest: Sendable, Hashable {
    package var name: IdentityName
    package var provider: String
    package var grant: GrantKind?
    package var refreshToken: Secret?
    package var sessionID: Secret?
    package var accessToken: Secret?
    package var expiresIn: Int?
    package var allow: [String]
    package var refreshAt: Double?
    /// Enroll with the session of this identity (SSO across apps): the
    /// session id is copied inside the vault and never leaves it.
    package var from: IdentityName?

    package init(
        name: IdentityName, provider: String, grant: GrantKind? = nil, refreshToken: Secret? = nil,
        sessionID: Secret? = nil, accessToken: Secret? = nil, expiresIn: Int? = nil, allow: [String] = [],
        refreshAt: Double? = nil, from: IdentityName? = nil
    ) {
        self.from = from
        self.name = name
        self.provider = provider
        self.grant = grant
        self.refreshToken = refreshToken
        self.sessionID = sessionID
        self.accessToken = accessToken
        self.expiresIn = expiresIn
        self.allow = allow
        self.refreshAt = refreshAt
    }
}

extension EnrollRequest {
    /// The enrollment this request asks for, its access token's lifetime
    /// counted from `now`. A join (`from=`) gets its session in the vault.
    package func enrollment(now: Date) -> Enrollment {
        Enrollment(
            name: name, provider: provider, grant: grant, allowRules: allow, refreshAt: refreshAt,
            refreshToken: refreshToken, sessionID: sessionID, accessToken: accessToken,
            accessTokenExpiresAt: expiresIn.map { now.addingTimeInterval(Double($0)) })
    }
}
