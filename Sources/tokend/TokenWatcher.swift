import Foundation
import TokendCore

#if canImport(Glibc)
import Glibc
#endif

/// One identity's token as the agent pushes it over `WATCH`: the first
/// reply now, then a line each time the answer changes. Reading is driven
/// by the caller's `poll` loop, so it never blocks on the agent.
final class TokenWatcher {
    enum Event {
        case token(AgentToken)
        /// An `ERR` line: the agent could not serve a token right now.
        case failure(HelperFailure)
        /// The agent closed the connection (stopping, identity removed).
        case closed
    }

    /// A pushed line longer than this is not the protocol.
    static let maximumLine = 65_536

    let identity: IdentityName
    let socketPath: String
    private(set) var descriptor: Int32 = -1
    private var buffer: [UInt8] = []

    init(identity: IdentityName, socketPath: String) {
        self.identity = identity
        self.socketPath = socketPath
    }

    deinit {
        disconnect()
    }

    var isConnected: Bool { descriptor >= 0 }

    /// Connects and sends `WATCH <identity>`.
    func connect() throws(HelperFailure) {
        disconnect()
        let fd = UnixSocket.connect(socketPath)
        guard fd >= 0 else {
            throw HelperFailure("cannot connect to \(socketPath): \(String(cString: strerror(errno)))", code: CLIExitCode.cannotConnect)
        }
        descriptor = fd
        let line = Array("WATCH \(identity)\n".utf8)
        guard line.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == line.count else {
            disconnect()
            throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
        }
    }

    /// Connects and waits for the first reply: the current token, or the
    /// reason there is none.
    func first() throws(HelperFailure) -> AgentToken {
        try connect()
        while true {
            _ = pollReadable([descriptor], until: nil)
            for event in readAvailable() {
                switch event {
                case .token(let token): return token
                case .failure(let failure): throw failure
                case .closed: throw HelperFailure("the agent closed the connection", code: CLIExitCode.cannotConnect)
                }
            }
        }
    }

    func disconnect() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        buffer.removeAll()
    }

    /// Reads what has arrived (call when `descriptor` is readable) and
    /// returns one event per complete line; `.closed` ends the connection.
    func readAvailable() -> [Event] {
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0 && (errno == EINTR || errno == EAGAIN) { return [] }
        guard count > 0 else {
            disconnect()
            return [.closed]
        }
        buffer.append(contentsOf: chunk[..<count])
        var events: [Event] = []
        while let newline = buffer.firstIndex(of: 0x0A) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeSubrange(...newline)
            do throws(HelperFailure) {
                events.append(.token(try AgentToken.parse(line)))
            } catch {
                events.append(.failure(error))
            }
        }
        if buffer.count > Self.maximumLine {
            disconnect()
            events.append(.failure(HelperFailure("the agent sent a line longer than \(Self.maximumLine) bytes", code: CLIExitCode.protocolError)))
            events.append(.closed)
        }
        return events
    }
}
