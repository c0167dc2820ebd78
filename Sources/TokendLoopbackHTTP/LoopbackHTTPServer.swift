import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import Synchronization

/// A request as a loopback server sees it.
package struct LoopbackHTTPRequest: Sendable {
    package var method: HTTPMethod
    package var path: String
    package var headers: HTTPHeaders
    package var body: Data

    /// The body parsed as a JSON object, or nil.
    package var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    }

    /// The body parsed as `application/x-www-form-urlencoded`.
    package var form: [String: String] {
        var fields: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            fields[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return fields
    }
}

/// What a loopback server does with a request.
package enum LoopbackHTTPAction: Sendable {
    /// Answers after `delay`. Without a `Content-Length` header the body is
    /// sent chunked (so clients cannot know its size in advance).
    case respond(status: Int, headers: [(String, String)], body: Data, delay: Duration = .zero, declareLength: Bool = true)
    /// Resets the TCP connection without answering.
    case reset

    package static func json(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> LoopbackHTTPAction {
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return .respond(status: status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    package static func empty(_ status: Int) -> LoopbackHTTPAction {
        .respond(status: status, headers: [], body: Data())
    }
}

/// A small HTTP/1.1 server on 127.0.0.1 (a free port): the quickstart's demo
/// provider and the tests' fake providers.
///
/// Real sockets on purpose: the provider code under test runs its real
/// HTTP client, timeouts and body limits against it.
package final class LoopbackHTTPServer: Sendable {
    package typealias Handler = @Sendable (LoopbackHTTPRequest) async -> LoopbackHTTPAction

    /// What one client may cost: every local user can reach a loopback port.
    package struct Limits: Sendable {
        /// Larger request bodies get 413 and the connection is closed.
        package var maximumBodyBytes = 64 * 1024
        /// Connections beyond this are closed at once.
        package var maximumConnections = 64
        /// A connection that sends nothing for this long is closed. (The
        /// metrics listener asks for 10 s. Not shorter by default: a test
        /// run starting hundreds of tests on two cores can starve a client
        /// for over 10 s between its connect and its request, and a test
        /// provider then closed a connection in use.)
        package var idleTimeout: TimeAmount = .seconds(60)

        package init() {}
    }

    package let port: Int
    package var baseURL: String { "http://127.0.0.1:\(port)" }
    private let serverChannel: any Channel
    private let serving: Task<Void, Never>

    private init(port: Int, serverChannel: any Channel, serving: Task<Void, Never>) {
        self.port = port
        self.serverChannel = serverChannel
        self.serving = serving
    }

    /// Listens on `host:port` (port 0: a free one), or on the Unix socket
    /// `unixSocketPath` when given.
    package static func start(
        host: String = "127.0.0.1", port: Int = 0, unixSocketPath: String? = nil, limits: Limits = Limits(),
        handler: @escaping Handler
    ) async throws -> LoopbackHTTPServer {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let open = Atomic<Int>(0)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                guard open.wrappingAdd(1, ordering: .relaxed).newValue <= limits.maximumConnections else {
                    open.wrappingSubtract(1, ordering: .relaxed)
                    channel.close(promise: nil)
                    throw ChannelError.inputClosed
                }
                channel.closeFuture.whenComplete { _ in open.wrappingSubtract(1, ordering: .relaxed) }
                try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: limits.idleTimeout))
                try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
            }
        }
        let server = if let unixSocketPath {
            try await bootstrap.bind(unixDomainSocketPath: unixSocketPath, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
        } else {
            try await bootstrap.bind(host: host, port: port, childChannelInitializer: initializer)
        }
        let port = server.channel.localAddress?.port ?? 0
        let channel = server.channel
        let serving = Task<Void, Never> {
            _ = try? await server.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask { await serve(connection, limits: limits, handler: handler) }
                        }
                    } catch {}
                    group.cancelAll()
                }
            }
        }
        return LoopbackHTTPServer(port: port, serverChannel: channel, serving: serving)
    }

    /// Stops listening and drops open connections.
    package func shutdown() async {
        try? await serverChannel.close()
        serving.cancel()
        await serving.value
    }

    private static func serve(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, limits: Limits, handler: Handler
    ) async {
        let channel = connection.channel
        do {
            try await connection.executeThenClose { inbound, outbound async throws -> Void in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let requestHead):
                    head = requestHead
                    body.clear()
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= limits.maximumBodyBytes else {
                        try await outbound.write(.head(HTTPResponseHead(
                            version: .http1_1, status: .payloadTooLarge,
                            headers: ["Content-Length": "0", "Connection": "close"])))
                        try await outbound.write(.end(nil))
                        return
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    guard let requestHead = head else { continue }
                    let request = LoopbackHTTPRequest(
                        method: requestHead.method, path: requestHead.uri, headers: requestHead.headers,
                        body: Data(buffer: body))
                    switch await handler(request) {
                    case .reset:
                        // SO_LINGER 0 makes close() send RST instead of FIN.
                        if let socket = channel as? any SocketOptionProvider {
                            try await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
                        }
                        return
                    case .respond(let status, let headers, let responseBody, let delay, let declareLength):
                        if delay > .zero { try await Task.sleep(for: delay) }
                        var responseHeaders = HTTPHeaders(headers)
                        if declareLength { responseHeaders.replaceOrAdd(name: "Content-Length", value: "\(responseBody.count)") }
                        try await outbound.write(.head(HTTPResponseHead(
                            version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: responseHeaders)))
                        // Large bodies go out in pieces, as a real server streams them.
                        var offset = 0
                        while offset < responseBody.count {
                            let end = min(offset + 64 * 1024, responseBody.count)
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(data: responseBody[offset..<end]))))
                            offset = end
                        }
                        try await outbound.write(.end(nil))
                    }
                }
            }
            }
        } catch {
            // A client that went away mid-exchange is not the server's problem.
        }
    }
}

/// Closes a connection when `IdleStateHandler` reports it idle.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
