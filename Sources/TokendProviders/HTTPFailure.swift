import Foundation
import TokendCore

/// Turns a non-2xx answer into a classified ``ProviderError``.
enum HTTPFailure {
    /// The classification shared by every endpoint: 429, 408 and 5xx are
    /// transient; 403 is a client (permission) problem; OAuth2 error codes
    /// decide the rest. Endpoint-specific rules (Transmit's 400/401 on a
    /// refresh) are applied by the caller before falling back to this.
    static func classify(
        _ response: ProviderHTTP.Response, endpoint: String, scrubbing secrets: [Secret]
    ) -> ProviderError {
        let error = ProviderErrorBody(parsing: response.body)
        let detail = error.summary(scrubbing: secrets)
        let said = detail.isEmpty ? "" : " (\(detail))"
        let status = response.status
        switch status {
        case 429, 408, 500...599:
            return ProviderError(
                .transient(retryAfter: RetryAfter.seconds(from: response.headers)),
                "\(endpoint) answered HTTP \(status)\(said)", providerCode: error.code)
        default:
            break
        }
        switch error.code {
        case "invalid_grant":
            return ProviderError(.invalidGrant, "\(endpoint) rejected the grant\(said)", providerCode: error.code)
        case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope", "invalid_request",
            "invalid_target", "access_denied":
            return ProviderError(
                .clientMisconfigured, "\(endpoint) rejected the client\(said)", providerCode: error.code)
        case "temporarily_unavailable", "server_error", "slow_down":
            return ProviderError(
                .transient(retryAfter: RetryAfter.seconds(from: response.headers)),
                "\(endpoint) answered HTTP \(status)\(said)", providerCode: error.code)
        default:
            // 401 without a known code is failed client authentication;
            // 3xx (redirects are not followed), 403, 404 and other 4xx mean
            // the configuration points somewhere wrong.
            return ProviderError(
                .clientMisconfigured, "\(endpoint) answered HTTP \(status)\(said)", providerCode: error.code)
        }
    }
}
