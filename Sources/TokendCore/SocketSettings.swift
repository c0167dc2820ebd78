/// How the socket server listens and what it bounds: the `[socket]`
/// section as the configuration loader produces it (the one place these
/// defaults live).
package struct SocketSettings: Sendable, Hashable {
    package static let defaultPath = "/run/tokend/tokend.sock"

    package var path: String
    /// Permission bits applied after binding (the file is created 0600).
    package var mode: UInt32
    /// Group owning the socket file, so its members can connect.
    package var group: String?
    package var maxConnections: Int
    /// Open connections one uid may hold, so one local user cannot take
    /// every slot from the others.
    package var maxConnectionsPerUID: Int
    package var idleTimeout: Duration
    /// Longest wait for a refresh triggered by `GET min_ttl=` or `REFRESH`.
    package var refreshWait: Duration
    /// How long the socket's loop polls for the next request before it
    /// sleeps, after answering the one connection it has (0: never).
    package var busyPoll: Duration

    package init(
        path: String = defaultPath, mode: UInt32 = 0o660, group: String? = nil, maxConnections: Int = 1024,
        maxConnectionsPerUID: Int = 512, idleTimeout: Duration = .seconds(60), refreshWait: Duration = .seconds(10),
        busyPoll: Duration = .microseconds(50)
    ) {
        self.path = path
        self.mode = mode
        self.group = group
        self.maxConnections = maxConnections
        self.maxConnectionsPerUID = maxConnectionsPerUID
        self.idleTimeout = idleTimeout
        self.refreshWait = refreshWait
        self.busyPoll = busyPoll
    }
}
