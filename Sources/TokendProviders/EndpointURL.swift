import Foundation
import TokendCore

/// Validation of provider URLs at configuration time.
enum EndpointURL {
    /// Returns `url` if it is an absolute `https://` URL (or `http://` when
    /// `allowInsecureHTTP`, for loopback tests), else throws a
    /// `clientMisconfigured` error naming the provider.
    ///
    /// - Parameter isBase: the URL is a base that paths are appended to, so
    ///   a trailing slash is dropped. A full endpoint URL is kept exactly
    ///   (`/o/token/` and `/o/token` are different resources).
    static func validated(_ url: String, allowInsecureHTTP: Bool, provider: String, isBase: Bool) throws -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else {
            throw ProviderError(.clientMisconfigured, "provider \(provider): \"\(url)\" is not an absolute URL")
        }
        switch scheme {
        case "https":
            break
        case "http" where allowInsecureHTTP:
            break
        case "http":
            throw ProviderError(
                .clientMisconfigured,
                "provider \(provider): \(url) is plain http; tokens would cross the network unencrypted "
                    + "(set allow_insecure_http = true only for loopback tests)")
        default:
            throw ProviderError(.clientMisconfigured, "provider \(provider): unsupported URL scheme \(scheme)")
        }
        guard components.user == nil, components.password == nil else {
            throw ProviderError(.clientMisconfigured, "provider \(provider): credentials in the URL are not allowed")
        }
        return isBase && url.hasSuffix("/") ? String(url.dropLast()) : url
    }
}
