// swift-tools-version:6.1
import PackageDescription

// One target per concern; each adds at most one heavy dependency, so the
// folder a file lives in says what it may touch (see CONTRIBUTING.md, "Layout").
let package = Package(
    name: "tokend",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tokend", targets: ["tokend"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // Domain types, Secret, pure policies and the seams (VaultStore).
        .target(
            name: "TokendCore",
            dependencies: [
                "CTokendSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The encrypted SQLite vault: GRDB for storage, swift-crypto for sealing.
        .target(
            name: "TokendVault",
            dependencies: [
                "TokendCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The fleet store: the vault on PostgreSQL (sealed exactly as the
        // SQLite vault, through TokendVault's KeyRing), per-identity leases
        // with fencing, and commit notifications.
        .target(
            name: "TokendFleet",
            dependencies: [
                "TokendCore",
                "TokendVault",
                "TokendConfig",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The only code that talks HTTP: OAuth2 and Transmit over AsyncHTTPClient.
        .target(
            name: "TokendProviders",
            dependencies: [
                "TokendCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A small HTTP/1.1 server on loopback: the quickstart's demo provider
        // and the tests' fake providers.
        .target(
            name: "TokendLoopbackHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        // Fakes for tests, over real I/O: a fake Transmit server on loopback HTTP.
        .target(
            name: "TokendTestKit",
            dependencies: [
                "TokendCore",
                "TokendLoopbackHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The token table the engine publishes and the server reads: the
        // seam between them (neither imports the other).
        .target(name: "TokendCache", dependencies: ["TokendCore"]),
        // The refresh engine: scheduler, single-flight, crash recovery.
        .target(
            name: "TokendEngine",
            dependencies: [
                "TokendCore", "TokendCache",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The configuration file: TOML in, typed and validated settings out.
        .target(
            name: "TokendConfig",
            dependencies: [
                "TokendCore",
                "TokendProviders",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Linux system calls Swift's Glibc module does not expose (prctl,
        // SO_PEERPIDFD, posix_spawn's closefrom).
        .target(name: "CTokendSystem"),
        // The line protocol v1: parse requests, render replies. No I/O.
        .target(name: "TokendProtocol", dependencies: ["TokendCore"]),
        // The Unix socket server on SwiftNIO: framing, peer credentials, ACL, audit.
        .target(
            name: "TokendServer",
            dependencies: [
                "TokendCore", "TokendProtocol", "TokendCache", "CTokendSystem",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Living under systemd: sd_notify (ready, status, watchdog, stopping)
        // and process hardening (no core dumps, no same-user ptrace).
        .target(
            name: "TokendSystemd",
            dependencies: [
                "TokendCore", "TokendCache", "CTokendSystem",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The quickstart: a demo provider on loopback and an agent using
        // it. Only `tokend quickstart` links it into its code path.
        .target(
            name: "TokendQuickstart",
            dependencies: [
                "TokendCore", "TokendConfig", "TokendVault", "TokendAgent", "TokendLoopbackHTTP",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The composition root: wires config, vault, providers and engine
        // into the running agent under one ServiceGroup.
        .target(
            name: "TokendAgent",
            dependencies: [
                "TokendCore", "TokendVault", "TokendProviders", "TokendCache", "TokendEngine", "TokendConfig", "CTokendSystem",
                "TokendFleet",
                "TokendProtocol", "TokendServer", "TokendLoopbackHTTP", "TokendSystemd",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The executable: ArgumentParser commands only.
        .executableTarget(
            name: "tokend",
            dependencies: [
                "TokendCore",
                "TokendVault",
                "TokendProviders",
                "TokendConfig",
                "TokendAgent",
                "TokendFleet",
                "TokendQuickstart",
                "TokendProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Measures the vault (open+decrypt, commits/s); not part of the tests.
        .executableTarget(
            name: "tokend-bench",
            dependencies: [
                "TokendCore",
                "TokendVault",
                "TokendCache",
                "TokendEngine",
                "CTokendSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/tokend-bench"
        ),
        .testTarget(name: "TokendCoreTests", dependencies: ["TokendCore"]),
        .testTarget(name: "TokendCacheTests", dependencies: ["TokendCore", "TokendCache"]),
        .testTarget(name: "TokendProtocolTests", dependencies: ["TokendCore", "TokendProtocol"]),
        .testTarget(name: "TokendAgentTests", dependencies: ["TokendAgent", "TokendSystemd", "TokendCore", "TokendCache", "TokendTestKit"]),
        .testTarget(
            name: "TokendServerTests",
            dependencies: [
                "TokendCore", "TokendProtocol", "TokendServer", "TokendCache", "TokendEngine", "TokendVault", "TokendTestKit", "TokendAgent",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TokendEngineTests",
            dependencies: [
                "TokendCore", "TokendCache", "TokendEngine", "TokendVault", "TokendProviders", "TokendTestKit", "TokendLoopbackHTTP",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "TokendConfigTests", dependencies: ["TokendCore", "TokendConfig", "TokendProviders"]),
        .testTarget(
            name: "TokendVaultTests",
            dependencies: [
                "TokendCore",
                "TokendVault",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(
            name: "TokendFleetTests",
            dependencies: [
                "TokendCore", "TokendVault", "TokendFleet", "TokendEngine", "TokendCache", "TokendTestKit",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TokendProvidersTests",
            dependencies: [
                "TokendCore", "TokendProviders", "TokendTestKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            // Response bodies copied from published API references (Recorded/SOURCES.md).
            resources: [.copy("Recorded")]
        ),
        .testTarget(
            name: "TokendCLITests",
            dependencies: [
                "TokendCore", "TokendVault", "TokendTestKit", "TokendFleet", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
