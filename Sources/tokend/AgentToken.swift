import Foundation
import TokendCore
import TokendProtocol

/// One access token as `GET` answers it.
struct AgentToken: Equatable {
    var value: String
    var expiresIn: Int
    var tokenType: String

    var expiry: Date { Date(timeIntervalSinceNow: TimeInterval(expiresIn)) }

    /// Parses `OK <token> <expires_in> <token_type> [k=v...]`; an `ERR` line
    /// becomes a failure with the protocol code's exit code.
    static func parse(_ line: String) throws(HelperFailure) -> AgentToken {
        if let token = ReceivedReply(line: line)?.token {
            return AgentToken(value: token.value, expiresIn: token.expiresIn, tokenType: token.type)
        }
        _ = try ReplyLine.ok(line)
        throw HelperFailure("unexpected reply from the agent", code: CLIExitCode.protocolError)
    }

    /// Asks the agent at `socket` for `identity`'s token with one `GET`.
    static func fetch(_ identity: IdentityName, socket: String) throws(HelperFailure) -> AgentToken {
        let client: SocketClient
        do {
            client = try SocketClient(path: socket)
        } catch {
            if case .cannotConnect(let message) = error { throw HelperFailure(message, code: CLIExitCode.cannotConnect) }
            throw HelperFailure("cannot connect to \(socket)", code: CLIExitCode.cannotConnect)
        }
        let reply: String
        do {
            reply = try client.request("GET \(identity)")
        } catch {
            throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
        }
        return try parse(reply)
    }
}
