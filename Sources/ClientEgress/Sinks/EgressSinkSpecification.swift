public import AsyncHTTPClient
public import Logging
public import TrickleProtocol
public import TrickleRelaySupport

/// Which egress sink a client installs: parsed from `--sink`, or chosen from the environment (issue #5's
/// precedence: the HTTP metrics reporter when a URL and an API key are set, else Kafka when bootstrap servers
/// are set, else the log sink).
public enum EgressSinkSpecification: Sendable, Hashable, CustomStringConvertible {
    /// One `TELEMETRY …` line per envelope.
    case log
    /// Count only.
    case null
    /// Append the envelopes to a file.
    case file(path: String)
    /// The HTTP metrics reporter, posting to this URL.
    case metrics(url: String)
    /// A Kafka producer for these bootstrap servers.
    case kafka(bootstrapServers: [String])
    /// OTLP/HTTP log export to an OpenTelemetry receiver (a Collector's `/v1/logs`).
    case otlp(endpoint: OTLPEndpoint)

    /// Parses a `--sink` value: `log`, `null`, `file:PATH`, `http://…`/`https://…`, `kafka:HOST:PORT[,…]`,
    /// `otlp:https://…` (`http://` only to this machine; no path means `/v1/logs`).
    public init(parsing text: String) throws(EgressSinkSpecificationError) {
        switch text {
        case "log": self = .log
        case "null": self = .null
        case _ where text.hasPrefix("file:"):
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw EgressSinkSpecificationError("sink file: needs a path, e.g. file:telemetry.jsonl") }
            self = .file(path: path)
        case _ where text.hasPrefix("http://") || text.hasPrefix("https://"):
            guard text.split(separator: "/", omittingEmptySubsequences: true).count >= 2 else {
                throw EgressSinkSpecificationError("sink \(text) has no host; use http(s)://HOST[:PORT]/PATH")
            }
            self = .metrics(url: text)
        case _ where text.hasPrefix("kafka:"):
            let servers = text.dropFirst(6).split(separator: ",").map(String.init)
            guard !servers.isEmpty, servers.allSatisfy({ $0.contains(":") }) else {
                throw EgressSinkSpecificationError("sink kafka: needs HOST:PORT[,HOST:PORT…], got \(text)")
            }
            self = .kafka(bootstrapServers: servers)
        case _ where text.hasPrefix("otlp:"):
            do {
                self = .otlp(endpoint: try OTLPEndpoint(parsing: String(text.dropFirst(5)), signalPath: "/v1/logs", what: "sink otlp:"))
            } catch {
                throw EgressSinkSpecificationError(error.description)
            }
        default:
            throw EgressSinkSpecificationError(
                "sink must be log, null, file:PATH, http(s)://…, kafka:HOST:PORT[,…] or otlp:https://…, got \(OTLPEndpoint(redacting: text))"
            )
        }
    }

    /// The default from the environment: `SCOPE_TELEMETRY_LOG_SINK=1` → the log sink; `TRICKLE_RELAY_METRICS_URL`
    /// (or `DAYDREAM_METRICS_URL`) with an API key → the metrics reporter; else `KAFKA_BOOTSTRAP_SERVERS` → Kafka;
    /// else the log sink (Scope's precedence).
    public static func fromEnvironment(_ environment: [String: String], hasAPIKey: Bool) -> Self {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        // Scope's switch for its log sink wins over everything.
        if value("SCOPE_TELEMETRY_LOG_SINK") == "1" { return .log }
        if hasAPIKey, let url = value("TRICKLE_RELAY_METRICS_URL") ?? value("DAYDREAM_METRICS_URL"),
            let sink = try? Self(parsing: url), case .metrics = sink
        {
            return sink
        }
        if let servers = value("KAFKA_BOOTSTRAP_SERVERS"), let sink = try? Self(parsing: "kafka:" + servers) {
            return sink
        }
        return .log
    }

    /// Whether the sink can fail on a remote side (and so writes through the disk spool by default).
    public var canFailRemotely: Bool {
        switch self {
        case .metrics, .kafka, .otlp: return true
        case .log, .null, .file: return false
        }
    }

    /// Which kind of sink, in one word (`log`, `null`, `file`, `metrics`, `kafka`, `otlp`): what a metric label
    /// and the live page show (no path, URL or broker).
    public var kind: String {
        switch self {
        case .log: return "log"
        case .null: return "null"
        case .file: return "file"
        case .metrics: return "metrics"
        case .kafka: return "kafka"
        case .otlp: return "otlp"
        }
    }

    /// A description safe for logs (a URL's query is redacted).
    public var description: String {
        switch self {
        case .log: return "log"
        case .null: return "null"
        case .file(let path): return "file:\(path)"
        case .metrics(let url): return url.split(separator: "?", maxSplits: 1).first.map { $0 + (url.contains("?") ? "?…" : "") } ?? url
        case .kafka(let servers): return "kafka:" + servers.joined(separator: ",")
        case .otlp(let endpoint): return "otlp:\(endpoint)"
        }
    }
}

/// A sink value that cannot be used, and what to write instead.
public struct EgressSinkSpecificationError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

extension EgressSinkSpecification {
    /// Opens the sink this names: the one place sinks are made.
    ///
    /// - Parameters:
    ///   - httpClient: The client the metrics reporter sends with; without one, `.metrics` cannot be made.
    ///   - apiKey: The metrics endpoint's key, read when needed.
    ///   - fileSync: When a file sink syncs to disk.
    ///   - logOutput: Where the log sink writes its lines (standard error, usually).
    ///   - tls: The TLS of the metrics and OTLP sinks' requests, when it may change while they run.
    /// - Throws: ``EgressSinkSpecificationError`` (a sink this caller cannot make), or the sink's own error
    ///   (``FileSinkError``: the file cannot be opened; `KafkaError`: librdkafka is missing or refused a property).
    public func makeSink(
        httpClient: HTTPClient?,
        apiKey: @escaping @Sendable () -> String? = { nil },
        fileSync: FileSink.SyncPolicy = .never,
        kafka: KafkaSink.Configuration = .init(bootstrapServers: []),
        otlp: OTLPLogOptions = .init(),
        tracing: DeliveryTracing = .off,
        logger: Logger,
        logOutput: @escaping @Sendable (String) -> Void,
        tls: OutboundTLSContext? = nil
    ) throws -> any EgressSink {
        switch self {
        case .null: return NullSink()
        case .log: return LogSink(write: logOutput)
        case .file(let path): return try FileSink(path: path, syncPolicy: fileSync, logger: logger)
        case .metrics(let url):
            guard let httpClient else { throw EgressSinkSpecificationError("the metrics sink cannot be used here; use log, null or file:PATH") }
            var configuration = MetricsReporter.Configuration(url: url)
            configuration.tls = tls
            return MetricsReporter(configuration: configuration, httpClient: httpClient, apiKey: apiKey, tracing: tracing, logger: logger)
        case .otlp(let endpoint):
            guard let httpClient else { throw EgressSinkSpecificationError("the OTLP sink cannot be used here; use log, null or file:PATH") }
            var configuration = MetricsReporter.Configuration(
                url: endpoint.url,
                format: .otlpLogs(serviceName: otlp.serviceName, resourceAttributes: otlp.resourceAttributes),
                headers: otlp.headers
            )
            configuration.tls = tls
            // The metrics API key, when one is configured, goes as a bearer header here too.
            return MetricsReporter(configuration: configuration, httpClient: httpClient, apiKey: apiKey, tracing: tracing, logger: logger)
        case .kafka(let servers):
            var configuration = kafka
            configuration.bootstrapServers = servers
            return try KafkaSink(configuration: configuration, logger: logger, tracing: tracing)
        }
    }
}

/// Settings of the OTLP log sink beyond its URL.
public struct OTLPLogOptions: Sendable {
    /// Request headers (`TRICKLE_RELAY_OTLP_LOGS_HEADERS`, OpenTelemetry's `key=value,…` form). Never logged.
    public var headers: [(String, String)]
    /// The resource's `service.name`. Default `trickle-relay-client`.
    public var serviceName: String
    /// More resource attributes (`host.name` by default).
    public var resourceAttributes: [(String, String)]

    public init(headers: [(String, String)] = [], serviceName: String = "trickle-relay-client", resourceAttributes: [(String, String)] = [("host.name", MetricsReporter.hostName())]) {
        self.headers = headers
        self.serviceName = serviceName
        self.resourceAttributes = resourceAttributes
    }
}
