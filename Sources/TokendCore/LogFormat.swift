/// How log lines look on stderr (journald adds its own timestamp and unit).
package enum LogFormat: String, Sendable, CaseIterable {
    /// `time=... level=info logger=tokend.engine msg="..." tokend.identity=a`
    case logfmt
    /// One JSON object per line.
    case json
}
