// swift-tools-version:6.1
import PackageDescription

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// The version has one home, the VERSION file (scripts/package.sh and the Python wheel read it too); the commit comes
// from TRICKLE_RELAY_GIT_COMMIT (scripts/package.sh sets it, so a package never carries a stale one) or from git.
let trickleRelayVersion: String = {
    let path = Context.packageDirectory + "/VERSION"
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else { return "0.0.0" }
    return text.filter { !$0.isWhitespace }
}()
let trickleRelayCommit: String = {
    if let commit = Context.environment["TRICKLE_RELAY_GIT_COMMIT"], !commit.isEmpty { return commit }
    guard let git = Context.gitInformation else { return "unknown" }
    return String(git.currentCommit.prefix(12)) + (git.hasUncommittedChanges ? "-dirty" : "")
}()

// Settings applied to every target (see STYLE.md §1).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// ThreadSanitizer builds (`TRICKLE_RELAY_TSAN=1`, see `.ci/run`) leave swift-otel out: 1.6.0 does not compile with
// `-sanitize=thread` on Swift 6.3 ("sending 'logger' risks causing data races" in its batch processors). RelayTracing
// then builds without an exporter and refuses to be configured (`RelayTracing.isAvailable` is false).
let threadSanitizerBuild = Context.environment["TRICKLE_RELAY_TSAN"] != nil

let package = Package(
    name: "TrickleRelay",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TrickleProtocol", targets: ["TrickleProtocol"]),
        .library(name: "RunnerRelay", targets: ["RunnerRelay"]),
        .library(name: "ClientEgress", targets: ["ClientEgress"]),
        .executable(name: "trickle-relay", targets: ["trickle-relay"]),
    ],
    dependencies: [
        // No default traits: FullFoundation would link all of Foundation (and ICU), ConfigurationSupport builds
        // swift-configuration; neither is used.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // TLS: already built for AsyncHTTPClient; used directly for trust and client certificates, the embedded
        // server's TLS and the fleet's own connections.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // HTTP/2: already built for AsyncHTTPClient; `serve --http2` offers it over TLS as go-livepeer's server does.
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
    ],
    targets: [
        // What every side shares and is not the wire protocol: failure states and throttled logs, back-off, clocks,
        // bounded files and standard streams, secret files, metrics plumbing, the small HTTP listener pieces.
        .target(
            name: "TrickleRelaySupport",
            dependencies: [
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "TrickleProtocol",
            dependencies: [
                "TrickleRelaySupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "RunnerRelay",
            dependencies: [
                "TrickleRelaySupport",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                "TrickleProtocol",
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // librdkafka bindings, loaded at run time (dlopen): no build-time dependency on the C library.
        .target(name: "RdKafka"),
        .target(
            name: "ClientEgress",
            dependencies: [
                "TrickleRelaySupport",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                "TrickleProtocol",
                "RdKafka",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // The relay's own OTLP tracer (swift-otel), kept out of the libraries: they see only swift-distributed-tracing's
        // `Tracer`, so an application that embeds them chooses its tracing itself.
        .target(
            name: "RelayTracing",
            dependencies: [
                "TrickleRelaySupport",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "RelayDemo",
            dependencies: [
                "TrickleRelaySupport",
                "TrickleProtocol",
                "RunnerRelay",
                "ClientEgress",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Version and commit for `trickle-relay --version`, passed in as C string defines.
        .target(
            name: "TrickleRelayBuildInfo",
            cSettings: [
                .define("TRICKLE_RELAY_VERSION", to: "\"\(trickleRelayVersion)\""),
                .define("TRICKLE_RELAY_GIT_COMMIT", to: "\"\(trickleRelayCommit)\""),
            ]
        ),
        .executableTarget(
            name: "trickle-relay",
            dependencies: [
                "TrickleRelaySupport",
                "TrickleRelayBuildInfo",
                "TrickleProtocol",
                "RunnerRelay",
                "ClientEgress",
                "RelayDemo",
                "RelayTracing",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "TrickleTestSupport",
            dependencies: [
                "TrickleRelaySupport",
                "TrickleProtocol",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Tests/TrickleTestSupport"
        ),
        .testTarget(
            name: "RunnerRelayTests",
            dependencies: [
                "TrickleRelaySupport",
                "RunnerRelay",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                "TrickleProtocol",
                "TrickleTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "ClientEgressTests",
            dependencies: [
                "TrickleRelaySupport",
                "ClientEgress",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                "RelayTracing",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                "RdKafka",
                "TrickleProtocol",
                "RunnerRelay",
                "TrickleTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "TrickleRelaySupport",
                "TrickleProtocol",
                "RdKafka",
                "TrickleTestSupport",
                "RelayDemo",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TrickleProtocolTests",
            dependencies: [
                "TrickleRelaySupport",
                "TrickleProtocol",
                "TrickleTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

if !threadSanitizerBuild {
    // Only the OTLP/HTTP exporter: the default traits also pull in gRPC (build minutes for nothing we use).
    package.dependencies.append(.package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]))
    if let relayTracing = package.targets.first(where: { $0.name == "RelayTracing" }) {
        relayTracing.dependencies.append(.product(name: "OTel", package: "swift-otel"))
    }
}

// Benchmarks stay out of `swift test` (like Hummingbird's Package.swift): the target exists only when
// TRICKLE_RELAY_BENCHMARKS is set, e.g. `TRICKLE_RELAY_BENCHMARKS=1 swift run -c release trickle-relay-bench`.
if Context.environment["TRICKLE_RELAY_BENCHMARKS"] != nil {
    package.targets.append(
        .executableTarget(
            name: "trickle-relay-bench",
            dependencies: [
                "TrickleRelaySupport",
                "RelayTracing",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                "TrickleProtocol",
                "RdKafka",
                "RunnerRelay",
                "ClientEgress",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/trickle-relay-bench"
        )
    )
}

// CI builds the project's own targets with warnings as errors (dependencies keep their warnings): set
// TRICKLE_RELAY_STRICT=1, as `.ci/run` does.
let strictSettings: [SwiftSetting] =
    Context.environment["TRICKLE_RELAY_STRICT"] != nil ? [.unsafeFlags(["-warnings-as-errors"])] : []

// ThreadSanitizer runs (`.ci/run`): `Mutex` becomes a lock TSan can see (Sources/TrickleRelaySupport/SanitizerVisibleMutex.swift).
let sanitizerSettings: [SwiftSetting] =
    Context.environment["TRICKLE_RELAY_TSAN"] != nil ? [.define("TRICKLE_RELAY_TSAN")] : []

for target in package.targets where target.name != "TrickleRelayBuildInfo" {
    var settings = target.swiftSettings ?? []
    settings.append(contentsOf: swiftSettings + strictSettings + sanitizerSettings)
    target.swiftSettings = settings
}

// The libFuzzer harness (Fuzz/run.sh): exists only when TRICKLE_RELAY_FUZZ is set. The code under test is built with
// libFuzzer's coverage instrumentation and AddressSanitizer; its dependencies are not (they are not what is fuzzed).
if Context.environment["TRICKLE_RELAY_FUZZ"] != nil {
    let fuzzFlags: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]
    for target in package.targets where ["TrickleProtocol", "ClientEgress"].contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + fuzzFlags
    }
    package.targets.append(.target(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"))
    package.targets.append(
        .executableTarget(
            name: "trickle-relay-fuzz",
            dependencies: [
                "TrickleRelaySupport",
                "CLibFuzzer",
                "TrickleProtocol",
                "ClientEgress",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Fuzz/trickle-relay-fuzz",
            swiftSettings: swiftSettings + strictSettings + fuzzFlags,
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]
        )
    )
}
