import ArgumentParser
import Foundation
import TokendProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The value of `get --wait`: seconds, checked when the argument is parsed.
struct WaitSeconds: ExpressibleByArgument {
    static let maximum = 86_400.0
    var seconds: Double

    /// Plain decimal seconds ("30", "0.5"); not the hex, exponent or
    /// infinity forms that `Double` would also read.
    init?(argument: String) {
        guard argument.wholeMatch(of: /[0-9]{1,6}(\.[0-9]{1,6})?/) != nil,
            let value = Double(argument), (0...Self.maximum).contains(value)
        else { return nil }
        seconds = value
    }
}

/// `tokend get <id> --wait <seconds>`: asks again until the first token is
/// served, so an init step or a worker's entry point can start before the
/// agent (or its first refresh) is done. Only answers that can change by
/// waiting are retried: no agent yet, `unavailable`, `busy`, `shutting_down`
/// (a restart). `forbidden`, `not_found` and `reauth_required` end it at
/// once: waiting would not change them.
enum TokenWait {
    static let retried: Set<String> = ["unavailable", "busy", "shutting_down"]
    /// How often to look for a socket that is not there yet.
    static let connectInterval = Duration.milliseconds(100)
    static let minimumAttempt = Duration.milliseconds(20)

    /// The fields after `OK` of the first token reply, or exits with the
    /// last failure's code and message once `wait` has passed.
    static func fields(_ request: String, path: String, wait: WaitSeconds) throws -> [String] {
        let deadline = ContinuousClock.now + .milliseconds(Int64(wait.seconds * 1000))
        var last = (message: "cannot connect to \(path)", code: CLIExitCode.cannotConnect)
        while true {
            var pause = connectInterval
            switch SocketClient.request(request, path: path, until: deadline) {
            case .success(let reply):
                let fields = reply.split(separator: " ").map(String.init)
                guard fields.first == "ERR", fields.count >= 2, retried.contains(fields[1]) else {
                    // A token, or an answer that waiting cannot change.
                    return try ReplyLine.ok(reply)
                }
                last = ("\(fields[1]): \(fields.dropFirst(2).joined(separator: " "))", CLIExitCode.for(protocolCode: fields[1]))
                if let seconds = ReceivedReply.options(fields.dropFirst(2))["retry_after"].flatMap(Int.init), seconds > 0 {
                    pause = .seconds(min(seconds, 60))
                }
            case .failure(.cannotConnect(let why)): last = (why, CLIExitCode.cannotConnect)
            case .failure(.broken(let why)): last = (why, CLIExitCode.cannotConnect)
            case .failure(.timedOut):
                // The agent held the GET while a refresh ran, past our deadline.
                last = ("no token for the request within \(wait.seconds) s", CLIExitCode.unavailable)
            }
            // An attempt with almost no time left could only time out, and
            // would hide why the earlier ones failed.
            let left = deadline - .now
            if left > minimumAttempt { blockingSleep(min(pause, left)) }
            guard deadline - .now > minimumAttempt else {
                throw HelperFailure("gave up after \(wait.seconds) s: \(last.message)", code: last.code)
            }
        }
    }

    /// A blocking pause: the client commands are one-shot and single-threaded.
    private static func blockingSleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
