import ArgumentParser
import ClientEgress
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import RelayTracing
import TrickleProtocol

/// The relay's own OTLP tracing, configured from the environment (`TRICKLE_RELAY_OTLP_TRACES_ENDPOINT`…): off
/// unless an endpoint is set.
struct TracingOptions: ParsableArguments {
    @Flag(
        help: """
            Also install the relay's tracer as the process-global one (InstrumentationSystem). Off by default: the \
            relay's spans go only to TRICKLE_RELAY_OTLP_TRACES_ENDPOINT (https://, or http:// on 127.0.0.1; no \
            path means /v1/traces), through a tracer of its own. Also read: TRICKLE_RELAY_OTLP_TRACES_HEADERS \
            (key=value,…), …_PROTOCOL (http/protobuf or http/json), …_SAMPLER (parentbased_always_on, always_on, \
            always_off, traceidratio, parentbased_traceidratio) with …_SAMPLER_ARG, TRICKLE_RELAY_OTLP_SERVICE_NAME, \
            TRICKLE_RELAY_OTLP_RESOURCE_ATTRIBUTES.
            """
    )
    var otelGlobal = false

    /// The configuration for a process of `role`, checked at argument validation (a bad endpoint exits 64).
    func configuration(role: String) throws -> RelayTracingConfiguration? {
        do {
            return try RelayTracingConfiguration.fromEnvironment(
                ProcessInfo.processInfo.environment,
                role: role,
                hostName: MetricsReporter.hostName(),
                installsGlobally: self.otelGlobal
            )
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// The tracer for a process of `role`, or `nil` when tracing is off. Its exporter uses the process's outbound
    /// TLS files (`tls` over the configuration file's `file`), checked first (exit 64 naming the problem).
    func makeTracing(role: String, tls: TLSOptions, file: OutboundTLS = OutboundTLS(), logger: Logger) throws -> RelayTracing? {
        guard var configuration = try self.configuration(role: role) else { return nil }
        _ = try tls.configuration(file: file)
        let settings = tls.settings(file: file)
        configuration.caFile = settings.caFile
        configuration.trustsOnlyCAFile = settings.caOnly
        configuration.clientCertificateFile = settings.clientCertificateFile
        configuration.clientKeyFile = settings.clientKeyFile
        logger.info(
            "relay tracing on",
            metadata: ["otlp.endpoint": "\(configuration.endpoint)", "otlp.service_name": "\(configuration.serviceName)", "otlp.global": "\(configuration.installsGlobally)"]
        )
        do {
            return try RelayTracing(configuration: configuration, logger: logger)
        } catch let failure as RelayTracingConfiguration.Failure {
            throw ValidationError(failure.description)
        }
    }
}
