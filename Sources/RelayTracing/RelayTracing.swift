public import Logging
#if canImport(OTel)
import OTel
#endif
public import ServiceLifecycle
public import Tracing
import Synchronization
import TrickleRelaySupport

/// The relay's own tracer: swift-otel exporting over OTLP/HTTP to an endpoint configured for the relay alone
/// (``RelayTracingConfiguration``). It is handed to the libraries explicitly and is **not** the process-global
/// tracer unless ``RelayTracingConfiguration/installsGlobally`` says so, so an application that embeds the relay
/// keeps its own tracing untouched.
public struct RelayTracing: Sendable {
    private static let retained = RelayMutex<[(any Tracer, any Service)]>([])

    /// The tracer to hand to the relay's parts.
    public let tracer: any Tracer
    /// Exports finished spans; run it (in the process's service group) and shut it down last.
    public let service: any Service

    #if canImport(OTel)
    /// Whether this build has the OTLP exporter (every build but the ThreadSanitizer one, see `Package.swift`).
    public static let isAvailable = true

    /// Builds the tracer and its exporter.
    ///
    /// swift-otel also applies the standard `OTEL_*` variables of this process's environment on top
    /// (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER`…): in a relay process they are the relay's own.
    public init(configuration: RelayTracingConfiguration, logger: Logger) throws {
        var otel = OTel.Configuration.default
        otel.serviceName = configuration.serviceName
        otel.resourceAttributes = configuration.resourceAttributes
        otel.diagnosticLogger = .custom(DiagnosticLogHandler.wrapping(logger))
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.endpoint = configuration.endpoint.url
        otel.traces.otlpExporter.headers = configuration.headers
        otel.traces.otlpExporter.protocol = configuration.usesJSON ? .httpJSON : .httpProtobuf
        otel.traces.batchSpanProcessor.scheduleDelay = configuration.exportInterval
        otel.traces.sampler = configuration.sampler.otel
        otel.propagators = [.traceContext]
        if let caFile = configuration.caFile {
            // swift-otel trusts only the file it is given; `--ca-file` adds to the system's roots.
            do {
                otel.traces.otlpExporter.certificateFilePath = configuration.trustsOnlyCAFile ? caFile : try TrustBundle.combining(caFile: caFile)
            } catch {
                throw RelayTracingConfiguration.Failure(description: "the traces exporter's trust: \(error)")
            }
        }
        otel.traces.otlpExporter.clientCertificateFilePath = configuration.clientCertificateFile
        otel.traces.otlpExporter.clientKeyFilePath = configuration.clientKeyFile
        let backend = try OTel.makeTracingBackend(configuration: otel)
        self.tracer = backend.factory
        self.service = backend.service
        // swift-otel's OTLP/HTTP exporter shuts its HTTP client down in `deinit` with `syncShutdown()`, which traps
        // when it runs on a NIO event loop — and `serve`/`client` run Swift Concurrency on NIO's event loops, so
        // the last release may happen there. The exporter is shut down through its service; keeping the (idle)
        // objects for the life of the process means that `deinit` never runs.
        Self.retained.withLock { $0.append((backend.factory, backend.service)) }
        if configuration.installsGlobally {
            InstrumentationSystem.bootstrap(backend.factory)
        }
    }
    #else
    /// Whether this build has the OTLP exporter (every build but the ThreadSanitizer one, see `Package.swift`).
    public static let isAvailable = false

    /// This build has no OTLP exporter (a ThreadSanitizer build leaves swift-otel out): always throws.
    public init(configuration: RelayTracingConfiguration, logger: Logger) throws {
        throw RelayTracingConfiguration.Failure(description: "this build of trickle-relay has no OTLP exporter (a ThreadSanitizer build); unset TRICKLE_RELAY_OTLP_TRACES_ENDPOINT")
    }
    #endif
}

/// How the relay's tracer samples (OpenTelemetry's sampler names).
public enum RelayTraceSampler: Sendable, Hashable {
    /// Follows the parent's decision; samples root spans (the default).
    case parentBasedAlwaysOn
    case alwaysOn
    case alwaysOff
    /// Samples this share of traces (0…1).
    case traceIDRatio(Double)
    /// Follows the parent's decision; samples this share of root spans.
    case parentBasedTraceIDRatio(Double)

    /// Parses `TRICKLE_RELAY_OTLP_TRACES_SAMPLER` (+ `…_SAMPLER_ARG` for the ratios).
    public init(name: String, argument: String?) throws(RelayTracingConfiguration.Failure) {
        func ratio() throws(RelayTracingConfiguration.Failure) -> Double {
            guard let argument else { return 1 }
            guard let value = Double(argument), value.isFinite, (0...1).contains(value) else {
                throw .init(description: "TRICKLE_RELAY_OTLP_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, got \(argument.prefix(40))")
            }
            return value
        }
        switch name {
        case "parentbased_always_on": self = .parentBasedAlwaysOn
        case "always_on": self = .alwaysOn
        case "always_off": self = .alwaysOff
        case "traceidratio": self = .traceIDRatio(try ratio())
        case "parentbased_traceidratio": self = .parentBasedTraceIDRatio(try ratio())
        default:
            throw .init(
                description: "TRICKLE_RELAY_OTLP_TRACES_SAMPLER must be parentbased_always_on, always_on, always_off, traceidratio or parentbased_traceidratio, got \(name.prefix(40))"
            )
        }
    }

    #if canImport(OTel)
    var otel: OTel.Configuration.TracesConfiguration.SamplerConfiguration {
        switch self {
        case .parentBasedAlwaysOn: return .parentBasedAlwaysOn
        case .alwaysOn: return .alwaysOn
        case .alwaysOff: return .alwaysOff
        case .traceIDRatio(let ratio): return .traceIDRatio(ratio: ratio) ?? .traceIDRatio
        case .parentBasedTraceIDRatio(let ratio): return .parentBasedTraceIDRatio(ratio: ratio) ?? .parentBasedTraceIDRatio
        }
    }
    #endif
}
