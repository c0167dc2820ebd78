import TokendConfig
import TokendCore
import TokendProviders

/// Builds provider instances from their validated configuration.
enum ProviderFactory {
    static func make(_ configurations: [ProviderConfiguration], http: ProviderHTTP) throws -> [String: any TokenProvider] {
        var providers: [String: any TokenProvider] = [:]
        for configuration in configurations {
            switch configuration {
            case .oauth2(let settings):
                providers[settings.name] = try OAuth2Provider(settings: settings, http: http)
            case .transmit(let settings):
                providers[settings.name] = try TransmitProvider(settings: settings, http: http)
            }
        }
        return providers
    }
}
