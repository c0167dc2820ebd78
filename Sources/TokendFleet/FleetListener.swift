import Logging
import PostgresNIO
import TokendCore

/// What a commit announces on channel `tokend_identity`: `<name> <generation>`.
package struct FleetNotification: Sendable, Hashable {
    package static let channel = "tokend_identity"

    package var name: IdentityName
    package var generation: Int64

    package init(name: IdentityName, generation: Int64) {
        self.name = name
        self.generation = generation
    }

    /// Parses a payload strictly: one valid identity name, one space, a
    /// positive decimal generation. Anything else (sent by hand, by another
    /// program, by a newer tokend) is nil.
    package init?(payload: String) {
        // 128 for the name, 1 space, 19 digits.
        guard payload.utf8.count <= 148 else { return nil }
        let parts = payload.utf8.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 2, let name = IdentityName(String(decoding: parts[0], as: UTF8.self)),
            !parts[1].isEmpty, parts[1].count <= 19,
            parts[1].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let generation = Int64(String(decoding: parts[1], as: UTF8.self)), generation >= 1
        else { return nil }
        self.init(name: name, generation: generation)
    }

    package var payload: String { "\(name.rawValue) \(generation)" }
}

/// What a ``FleetListener`` yields.
package enum FleetEvent: Sendable, Hashable {
    /// `LISTEN` is in effect on a (new) connection. Notifications sent while
    /// the listener was not connected are lost (PostgreSQL does not keep
    /// them): on this event a follower re-reads what it serves.
    case listening
    /// An identity's generation changed to `generation`.
    case changed(FleetNotification)
}

/// Listens on `tokend_identity` on a connection of its own and yields
/// ``FleetEvent``s; when the connection drops it reconnects with
/// exponential backoff. Malformed payloads are counted, logged by length
/// only (a payload is not trusted to be free of secrets) and skipped.
///
/// ```swift
/// for await event in FleetListener(settings: settings, logger: logger) {
///     switch event {
///     case .listening: await reloadEverything()
///     case .changed(let change): await reload(change.name, atLeast: change.generation)
///     }
/// }
/// ```
package struct FleetListener: AsyncSequence, Sendable {
    package typealias Element = FleetEvent

    package let settings: FleetSettings
    package let logger: Logger
    package let initialBackoff: Duration
    package let maximumBackoff: Duration

    package init(
        settings: FleetSettings, logger: Logger = Logger(label: "tokend.fleet.listener"),
        initialBackoff: Duration = .milliseconds(100), maximumBackoff: Duration = .seconds(5)
    ) {
        self.settings = settings
        self.logger = logger
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }

    /// Starts listening; the connection closes when the iteration ends.
    package func makeAsyncIterator() -> AsyncStream<FleetEvent>.Iterator {
        // A follower far behind gets the newest events; on overflow it has
        // lost some anyway and the newest ones are the ones that matter.
        let (stream, continuation) = AsyncStream.makeStream(of: FleetEvent.self, bufferingPolicy: .bufferingNewest(65_536))
        let task = Task { [self] in
            await run(continuation)
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream.makeAsyncIterator()
    }

    private func run(_ continuation: AsyncStream<FleetEvent>.Continuation) async {
        var backoff = initialBackoff
        var connectionID = 0
        while !Task.isCancelled {
            connectionID += 1
            do {
                let configuration = try settings.connectionConfiguration()
                let connection = try await PostgresConnection.connect(
                    configuration: configuration, id: connectionID, logger: logger)
                do {
                    try await connection.listen(on: FleetNotification.channel) { notifications in
                        continuation.yield(.listening)
                        backoff = initialBackoff
                        for try await notification in notifications {
                            if let change = FleetNotification(payload: notification.payload) {
                                if case .dropped = continuation.yield(.changed(change)) {
                                    // The follower is this far behind: an
                                    // older change fell out of the buffer, so
                                    // it must compare everything again.
                                    continuation.yield(.listening)
                                }
                            } else {
                                logger.warning(
                                    "fleet notification ignored: not <identity> <generation>",
                                    metadata: ["tokend.fleet.payload_bytes": "\(notification.payload.utf8.count)"])
                            }
                        }
                    }
                } catch {
                    if !Task.isCancelled {
                        logger.warning(
                            "fleet listener connection lost; reconnecting",
                            metadata: ["tokend.error": "\(PostgresVault.vaultError(error, settings: settings).message)"])
                    }
                }
                try? await connection.close()
            } catch {
                logger.warning(
                    "fleet listener cannot connect; retrying",
                    metadata: [
                        "tokend.error": "\(PostgresVault.vaultError(error, settings: settings).message)",
                        "tokend.fleet.retry_in": "\(backoff)",
                    ])
            }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: backoff)
            backoff = Swift.min(backoff * 2, maximumBackoff)
        }
    }
}

extension FleetListener {
    /// Hands every event to `follower` until the calling task is cancelled.
    package func follow(_ follower: some StoreFollower) async {
        for await event in self {
            switch event {
            case .listening: await follower.resynchronize()
            case .changed(let change): await follower.storeChanged(change.name, generation: change.generation)
            }
        }
    }
}
