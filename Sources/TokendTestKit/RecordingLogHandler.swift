import Logging
import Synchronization

/// A swift-log handler that keeps every rendered line in memory, so a test
/// can assert that no secret ever reached the logs.
package struct RecordingLogHandler: LogHandler {
    /// The lines logged through any handler sharing this store.
    package final class Store: Sendable {
        private let lines = Mutex<[String]>([])
        package init() {}
        package var all: [String] { lines.withLock { $0 } }
        func append(_ line: String) { lines.withLock { $0.append(line) } }

        /// A logger at `trace` level writing here.
        package func logger(label: String = "test") -> Logger {
            Logger(label: label) { label in RecordingLogHandler(label: label, store: self) }
        }
    }

    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .trace
    let label: String
    let store: Store

    package init(label: String, store: Store) {
        self.label = label
        self.store = store
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        store.append("\(event.level) \(label): \(event.message) \(rendered)")
    }
}
