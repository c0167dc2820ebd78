import Metrics
import Synchronization

/// `tokend_get_requests_total{result}`, with one counter object per result
/// made once: `GET` is the hot path, and asking the metrics factory for a
/// counter on every request costs a registry lookup each time.
enum GetRequestMetrics {
    private static let counters = Mutex<[String: Counter]>([:])

    static func count(_ result: String) {
        let counter = counters.withLock { counters in
            if let existing = counters[result] { return existing }
            let made = Counter(label: "tokend_get_requests_total", dimensions: [("result", result)])
            counters[result] = made
            return made
        }
        counter.increment()
    }
}
