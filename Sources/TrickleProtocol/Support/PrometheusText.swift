/// Builds a Prometheus text exposition (`GET /metrics`), one `# HELP`/`# TYPE`/sample block per metric.
public struct PrometheusText: Sendable {
    /// The prefix of every metric name, e.g. `trickle_relay_`.
    public let prefix: String
    /// The exposition so far.
    public private(set) var text = ""

    public init(prefix: String = "trickle_relay_") {
        self.prefix = prefix
    }

    /// Adds a counter (`_total` names) or gauge.
    public mutating func add(_ name: String, _ type: MetricType, _ help: String, _ value: Int) {
        let full = self.prefix + name
        self.text += "# HELP \(full) \(help)\n# TYPE \(full) \(type.rawValue)\n\(full) \(value)\n"
    }

    /// A metric's type.
    public enum MetricType: String, Sendable {
        case counter, gauge
    }
}
