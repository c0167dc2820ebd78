import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import TokendCore

/// The one HTTP client every provider shares, with tokend's limits applied.
///
/// Why one: connection pooling and a single clean shutdown. Why the limits:
/// a provider is a remote party; a slow, huge or garbled answer must cost a
/// bounded amount of time and memory and end as a classified
/// ``ProviderError``, never as a crash or an unbounded allocation.
package final class ProviderHTTP: Sendable {
    /// Responses larger than this are an error, not an allocation.
    package static let maximumBodySize = 1 << 20
    package static let userAgent = "tokend/\(TokendVersion.current)"

    let client: HTTPClient
    let logger: Logger

    /// - Parameters:
    ///   - connectTimeout: time to establish a TCP (and TLS) connection.
    package init(connectTimeout: Duration = .seconds(5), logger: Logger = Logger(label: "tokend.http")) {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .nanoseconds(Int64(connectTimeout.components.seconds * 1_000_000_000))))
        configuration.httpVersion = .automatic
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.logger = logger
    }

    /// Stops the client; in-flight requests fail. Call once, at shutdown.
    package func shutdown() async throws {
        try await client.shutdown()
    }

    /// A response with its body read (at most ``maximumBodySize`` bytes).
    package struct Response: Sendable {
        package var status: Int
        package var headers: HTTPHeaders
        package var body: Data
    }

    /// Sends one request and reads the whole (bounded) body.
    ///
    /// - Parameters:
    ///   - endpoint: names the call in error messages ("oauth2 provider
    ///     corp token endpoint"); never contains a secret.
    ///   - timeout: total time for the exchange, connect included.
    ///   - trust: a provider's private CA (`ca_file`); nil trusts the system store only.
    /// - Throws: ``ProviderError`` `.transient` for timeouts and connection
    ///   failures, `.malformedResponse` for a body over the cap.
    package func send(
        method: HTTPMethod, url: String, headers: HTTPHeaders, body: Data?, timeout: Duration, endpoint: String,
        trust: ProviderTrust? = nil
    ) async throws -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers = headers
        request.tlsConfiguration = trust?.tlsConfiguration
        request.headers.replaceOrAdd(name: "User-Agent", value: Self.userAgent)
        request.headers.replaceOrAdd(name: "Accept", value: "application/json")
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds * 1_000_000_000
            + timeout.components.attoseconds / 1_000_000_000))
        do {
            let response = try await client.execute(request, deadline: deadline, logger: logger)
            if let length = response.headers.first(name: "Content-Length").flatMap(Int.init),
                length > Self.maximumBodySize
            {
                throw ProviderError(
                    .malformedResponse,
                    "\(endpoint) answered with a \(length)-byte body (limit \(Self.maximumBodySize))")
            }
            let buffer = try await response.body.collect(upTo: Self.maximumBodySize)
            return Response(status: Int(response.status.code), headers: response.headers, body: Data(buffer: buffer))
        } catch let error as ProviderError {
            throw error
        } catch is NIOTooManyBytesError {
            throw ProviderError(
                .malformedResponse, "\(endpoint) answered with a body over \(Self.maximumBodySize) bytes")
        } catch {
            throw ProviderError(.transient(retryAfter: nil), "\(endpoint) unreachable: \(Self.describe(error))")
        }
    }

    /// A short, secret-free description of a transport failure.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout: return "timed out"
            case .remoteConnectionClosed: return "connection closed by the server"
            default: return "HTTP client error \(error)"
            }
        }
        if let error = error as? NIOSSLError, case .handshakeFailed = error {
            return "TLS handshake failed (\(String(describing: error).prefix(160))); "
                + "if the provider uses a private CA, name its certificate in ca_file"
        }
        if error is NIOSSLExtraError {
            return "TLS certificate rejected (\(String(describing: error).prefix(160))); "
                + "if the provider uses a private CA, name its certificate in ca_file"
        }
        let text = String(describing: error)
        if text.localizedCaseInsensitiveContains("connection reset") { return "connection reset" }
        if text.localizedCaseInsensitiveContains("refused") { return "connection refused" }
        // NIO's connection errors can be long; keep the first line.
        return String(text.prefix(200))
    }
}
