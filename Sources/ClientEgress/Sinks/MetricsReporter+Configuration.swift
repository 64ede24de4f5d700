public import TrickleProtocol
public import TrickleRelaySupport

extension MetricsReporter {
    /// Configuration of the HTTP metrics reporter.
    public struct Configuration: Sendable {
        /// The metrics endpoint, e.g. `https://api.example/v1/metrics` (env `TRICKLE_RELAY_METRICS_URL`,
        /// or Scope's `DAYDREAM_METRICS_URL`).
        public var url: String
        /// `app` of every batch. Default `trickle-relay`.
        public var app: String
        /// `host` of every batch. Default this machine's host name.
        public var host: String
        /// Events per request at most. Default 500.
        public var maximumBatchEvents: Int
        /// Request body bytes at most (batches are split before sending, not after a 413). Default 1 MiB.
        public var maximumBatchBytes: Int
        /// A batch is sent at least this often while events wait. Default 2 s.
        public var flushInterval: Duration
        /// Back-off on network errors and 5xx. Default 1 s → 60 s with jitter.
        public var retryBackoff: Backoff
        /// What flushes, back-off and `Retry-After` waits are measured on: `ContinuousClock` unless a test passes a
        /// manual clock (`RelayClock(clock)`).
        public var clock: RelayClock
        /// Wait after a 429 without a usable `Retry-After`. Default 60 s.
        public var defaultRetryAfter: Duration
        /// Events held in memory at most; what cannot be held is counted and reported. Default 50,000.
        public var maximumBufferedEvents: Int
        /// The smallest event a `413` may drop as too large. An endpoint that refuses a batch of one event
        /// smaller than this is misconfigured, not proof the event is too large: the reporter backs off and
        /// keeps the event (logged as a failure state) instead of dropping events one by one. Default 64 KiB.
        public var minimumTooLargeEventBytes: Int
        /// What the requests look like: the metrics API's batches, or OTLP/HTTP log exports. Default
        /// ``Format/metricsAPI``.
        public var format: Format
        /// More request headers (an OTLP receiver's `x-api-key`, a tenant header…). Never logged.
        public var headers: [(String, String)]
        /// The TLS every request carries, read per request so a reload (``OutboundTLSContext/replace(with:)``)
        /// applies to the next connection. `nil` (default): the HTTP client's own.
        public var tls: OutboundTLSContext? = nil

        public init(
            url: String,
            format: Format = .metricsAPI,
            headers: [(String, String)] = [],
            app: String = "trickle-relay",
            host: String = MetricsReporter.hostName(),
            maximumBatchEvents: Int = 500,
            maximumBatchBytes: Int = 1024 * 1024,
            flushInterval: Duration = .seconds(2),
            retryBackoff: Backoff = Backoff(initial: .seconds(1), maximum: .seconds(60)),
            defaultRetryAfter: Duration = .seconds(60),
            maximumBufferedEvents: Int = 50_000,
            minimumTooLargeEventBytes: Int = 64 * 1024,
            clock: RelayClock = .continuous
        ) {
            self.clock = clock
            self.url = url
            self.app = app
            self.host = host
            self.maximumBatchEvents = maximumBatchEvents
            self.maximumBatchBytes = maximumBatchBytes
            self.flushInterval = flushInterval
            self.retryBackoff = retryBackoff
            self.defaultRetryAfter = defaultRetryAfter
            self.maximumBufferedEvents = maximumBufferedEvents
            self.minimumTooLargeEventBytes = minimumTooLargeEventBytes
            self.format = format
            self.headers = headers
        }
    }

    /// The shape of the reporter's requests.
    public enum Format: Sendable {
        /// `{"app","host","events":[{type,data,id,timestamp}]}` to a `/v1/metrics`-style API.
        case metricsAPI
        /// OTLP/HTTP JSON `ExportLogsServiceRequest`s to a `/v1/logs` receiver: one log record per envelope, the
        /// envelope as its body (``OTLPLogEncoding``), under a resource with `service.name` and these attributes.
        case otlpLogs(serviceName: String, resourceAttributes: [(String, String)])

        /// What the endpoint is called in log lines.
        public var endpointName: String {
            switch self {
            case .metricsAPI: return "metrics endpoint"
            case .otlpLogs: return "OTLP logs endpoint"
            }
        }

        var deliverySpanName: String {
            switch self {
            case .metricsAPI: return "trickle_relay.metrics.deliver"
            case .otlpLogs: return "trickle_relay.otlp_logs.deliver"
            }
        }
    }

    /// Counters of a reporter, as a value.
    public struct Stats: Sendable, Hashable {
        /// Events the endpoint accepted.
        public var sent = 0
        /// Requests that succeeded.
        public var batches = 0
        /// Requests repeated after a network error, 5xx, 429 or 413.
        public var retries = 0
        /// Events dropped because the endpoint answered 400 for their batch.
        public var rejected = 0
        /// Single events dropped because even alone they were too large (413).
        public var tooLarge = 0
        /// Events that could not be held (buffer full).
        public var overflowed = 0
        /// Envelopes without an `id` or an object `data`, which the API cannot take (logged by seq and line).
        public var unsendable = 0
        /// 401 answers (sending pauses until the key changes).
        public var unauthorized = 0
        /// Events waiting now.
        public var buffered = 0

        public init() {}
    }
}
