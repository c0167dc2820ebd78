import NIOCore
import TokendCore
import TokendCache
import TokendProtocol

/// The life of one `WATCH`: a line on every change of what a `GET` would
/// answer, until the client goes away (the task is cancelled when the
/// connection closes), the identity goes away, or the peer loses access.
/// The agent's shutdown is the connection's to announce.
struct WatchStream: Sendable {
    let name: IdentityName
    let peer: PeerCredentials
    let channel: any Channel
    let handler: RequestHandler
    let cache: TokenCache

    func run(first: Reply) async {
        let updates = cache.watch(name)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var last = first
                for await update in updates {
                    if await revoked(update) { return }
                    guard let snapshot = update else { return }
                    // Only changes of what a GET would answer, not of the
                    // seconds counter or of internal bookkeeping.
                    let reply = handler.tokenReply(snapshot, peer: peer, verb: "WATCH")
                    guard !Self.sameAnswer(reply, last) else { continue }
                    last = reply
                    // Waits for the client to read it: a watcher that does
                    // not read holds the newest few updates, not all of them.
                    guard (try? await write(reply)) != nil else { return }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    await handler.policy.nextChange()
                    if Task.isCancelled { return }
                    if await revoked(cache.snapshot(name)) { return }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func write(_ reply: Reply) async throws {
        try await channel.writeAndFlush(channel.allocator.buffer(string: reply.line)).get()
    }

    /// The last line, then the close, without waiting for a client that
    /// may not be reading: it loses the line, not its access decision.
    private func end(with reply: Reply) {
        channel.writeAndFlush(channel.allocator.buffer(string: reply.line), promise: nil)
        channel.close(promise: nil)
    }

    /// Access is decided again before every line: the rules, the admins or
    /// the peer's groups may have changed since the last one.
    private func revoked(_ snapshot: TokenSnapshot?) async -> Bool {
        guard let snapshot else {
            end(with: .error(.forbidden, "identity \(name) was removed"))
            return true
        }
        // The rules as they are now, not as the buffered update had them.
        let rules = cache.snapshot(name)?.allowRules ?? snapshot.allowRules
        guard handler.policy.mayRead(rules, peer: peer) else {
            handler.audit?.record(peer: peer, verb: "WATCH", identity: name, result: "forbidden")
            end(with: .error(.forbidden, "identity not permitted for uid \(peer.uid)"))
            return true
        }
        return false
    }

    /// Two replies carry the same token (or the same error), whatever the
    /// remaining seconds say.
    static func sameAnswer(_ a: Reply, _ b: Reply) -> Bool {
        switch (a, b) {
        case (.ok(let x), .ok(let y)): x.first == y.first && x.count == y.count
        case (.error(let x, _, _), .error(let y, _, _)): x == y
        default: false
        }
    }
}
