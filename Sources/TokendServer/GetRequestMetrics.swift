import Metrics
import TokendProtocol

/// `tokend_get_requests_total{result}`, with one counter object per result
/// made once (at first use, after the metrics system is bootstrapped) and
/// never changed: `GET` is the hot path, so it takes no lock and asks the
/// metrics factory for nothing.
enum GetRequestMetrics {
    private static let counters: [String: Counter] = Dictionary(
        uniqueKeysWithValues: (["ok", "stale"] + ErrorCode.allCases.map(\.rawValue)).map { result in
            (result, Counter(label: "tokend_get_requests_total", dimensions: [("result", result)]))
        })

    private static let ok = counters["ok"]!
    private static let stale = counters["stale"]!

    static func count(_ result: String) {
        // The two answers of nearly every GET without hashing the label.
        switch result {
        case "ok": ok.increment()
        case "stale": stale.increment()
        default: counters[result]?.increment()
        }
    }
}
