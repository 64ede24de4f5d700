public import TrickleRelaySupport

/// Where and how the relay exports its own spans (segment publish and read, dispatch, spool write, sink
/// delivery). Tracing is off unless an endpoint is configured.
public struct RelayTracingConfiguration: Sendable {
    /// The OTLP/HTTP traces receiver (`TRICKLE_RELAY_OTLP_TRACES_ENDPOINT`; no path means `/v1/traces`):
    /// `https://` anywhere, `http://` on this machine only.
    public var endpoint: OTLPEndpoint
    /// Request headers (`TRICKLE_RELAY_OTLP_TRACES_HEADERS`, `key=value,…` with percent-encoded values). Never
    /// logged.
    public var headers: [(String, String)]
    /// `service.name` (`TRICKLE_RELAY_OTLP_SERVICE_NAME`). Default `trickle-relay-<role>`.
    public var serviceName: String
    /// Resource attributes: `trickle_relay.role` (runner, client, serve) and `host.name`, plus
    /// `TRICKLE_RELAY_OTLP_RESOURCE_ATTRIBUTES` (`key=value,…`).
    public var resourceAttributes: [String: String]
    /// The sampler (`TRICKLE_RELAY_OTLP_TRACES_SAMPLER`, `…_SAMPLER_ARG`). Default parent-based, always on.
    public var sampler: RelayTraceSampler
    /// OTLP/HTTP's JSON encoding instead of protobuf (`TRICKLE_RELAY_OTLP_TRACES_PROTOCOL=http/json`).
    public var usesJSON: Bool
    /// How often finished spans are exported. Default 5 s.
    public var exportInterval: Duration
    /// Also install the tracer as the process-global one (`--otel-global`). Default `false`.
    public var installsGlobally: Bool
    /// A CA file to trust for the exporter's `https` connections: added to the system's roots, or the only
    /// trust when ``trustsOnlyCAFile`` (the process's `--ca-file`, `--ca-only`). The standard
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` still wins.
    public var caFile: String? = nil
    public var trustsOnlyCAFile = false
    /// The client certificate and key the exporter presents (the process's `--client-cert`, `--client-key`).
    public var clientCertificateFile: String? = nil
    public var clientKeyFile: String? = nil

    /// A setting that cannot be used, and what to write instead.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public init(
        endpoint: OTLPEndpoint,
        headers: [(String, String)] = [],
        serviceName: String,
        resourceAttributes: [String: String] = [:],
        sampler: RelayTraceSampler = .parentBasedAlwaysOn,
        usesJSON: Bool = false,
        exportInterval: Duration = .seconds(5),
        installsGlobally: Bool = false
    ) {
        self.endpoint = endpoint
        self.headers = headers
        self.serviceName = serviceName
        self.resourceAttributes = resourceAttributes
        self.sampler = sampler
        self.usesJSON = usesJSON
        self.exportInterval = exportInterval
        self.installsGlobally = installsGlobally
    }

    /// The configuration in `environment` for a process of `role`, or `nil` when no traces endpoint is set
    /// (tracing off).
    public static func fromEnvironment(_ environment: [String: String], role: String, hostName: String, installsGlobally: Bool) throws(Failure) -> Self? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpointText = value("TRICKLE_RELAY_OTLP_TRACES_ENDPOINT") else {
            if installsGlobally {
                throw Failure(description: "--otel-global needs a traces endpoint: set TRICKLE_RELAY_OTLP_TRACES_ENDPOINT (e.g. https://collector:4318)")
            }
            return nil
        }
        do {
            let endpoint = try OTLPEndpoint(parsing: endpointText, signalPath: "/v1/traces", what: "TRICKLE_RELAY_OTLP_TRACES_ENDPOINT")
            let headers = try value("TRICKLE_RELAY_OTLP_TRACES_HEADERS").map { text throws(OTLPEndpoint.Failure) in
                try OTLPEndpoint.headers(parsing: text, what: "TRICKLE_RELAY_OTLP_TRACES_HEADERS")
            } ?? []
            var attributes = ["trickle_relay.role": role, "host.name": hostName]
            if let text = value("TRICKLE_RELAY_OTLP_RESOURCE_ATTRIBUTES") {
                for (key, value) in try OTLPEndpoint.headers(parsing: text, what: "TRICKLE_RELAY_OTLP_RESOURCE_ATTRIBUTES") {
                    attributes[key] = value
                }
            }
            let sampler = try value("TRICKLE_RELAY_OTLP_TRACES_SAMPLER").map { name throws(Failure) in
                try RelayTraceSampler(name: name, argument: value("TRICKLE_RELAY_OTLP_TRACES_SAMPLER_ARG"))
            } ?? .parentBasedAlwaysOn
            let usesJSON: Bool
            switch value("TRICKLE_RELAY_OTLP_TRACES_PROTOCOL") ?? "http/protobuf" {
            case "http/protobuf": usesJSON = false
            case "http/json": usesJSON = true
            case let other: throw Failure(description: "TRICKLE_RELAY_OTLP_TRACES_PROTOCOL must be http/protobuf or http/json, got \(other.prefix(40))")
            }
            return Self(
                endpoint: endpoint,
                headers: headers,
                serviceName: value("TRICKLE_RELAY_OTLP_SERVICE_NAME") ?? "trickle-relay-\(role)",
                resourceAttributes: attributes,
                sampler: sampler,
                usesJSON: usesJSON,
                installsGlobally: installsGlobally
            )
        } catch let failure as OTLPEndpoint.Failure {
            throw Failure(description: failure.description)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(error)")
        }
    }
}
