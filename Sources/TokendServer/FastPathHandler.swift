import NIOCore
import TokendProtocol

/// Answers requests that need no waiting (`PING`, `HELLO`, a `GET` of a
/// valid token) on the connection's event loop; passes everything else on
/// to the connection's async handler.
///
/// Order is kept: a request is answered here only while no earlier request
/// of the connection is still with the async handler (`pendingAsync` is 0),
/// and only once the connection is admitted (under the connection limit,
/// peer known) and not watching or shutting down.
///
/// Bounded: only while the channel is writable. A client that sends but
/// never reads fills the write buffer past its high-water mark; from then
/// on its requests go to the async handler, whose writes wait for the
/// client, and whose bounded inbound buffer stops reading from the socket.
/// So one such client pins at most the high-water mark plus one reply.
final class FastPathHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundOut = ByteBuffer

    let state: ConnectionState
    let handler: RequestHandler
    let shutdown: ShutdownSignal

    init(state: ConnectionState, handler: RequestHandler, shutdown: ShutdownSignal) {
        self.state = state
        self.handler = handler
        self.shutdown = shutdown
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .request(.success(let request)) = frame, context.channel.isWritable,
            state.pendingAsync.load(ordering: .acquiring) == 0, !state.watching.load(ordering: .relaxed), !shutdown.isFired,
            let peer = state.peer, let reply = handler.immediateReply(request, peer: peer)
        {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: reply.line)), promise: nil)
            return
        }
        state.pendingAsync.wrappingAdd(1, ordering: .acquiringAndReleasing)
        context.fireChannelRead(data)
    }
}
