/// Builds a Prometheus text exposition (`GET /metrics`), one `# HELP`/`# TYPE`/sample block per metric.
public struct PrometheusText: Sendable {
    /// The prefix of every metric name, e.g. `trickle_relay_`.
    public let prefix: String
    /// The exposition so far.
    public private(set) var text = ""
    /// The same metrics as values (for ``MetricsBridge``).
    public private(set) var samples: [Sample] = []

    /// One sample: full name, type, labels, value.
    public struct Sample: Sendable {
        public var name: String
        public var type: MetricType
        public var labels: [(String, String)]
        public var value: Int

        /// Name and labels: what identifies the sample's time series.
        var key: String { self.labels.isEmpty ? self.name : self.name + "{" + self.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}" }
    }

    public init(prefix: String = "trickle_relay_") {
        self.prefix = prefix
    }

    /// Adds a counter (`_total` names) or gauge.
    public mutating func add(_ name: String, _ type: MetricType, _ help: String, _ value: Int) {
        let full = self.prefix + name
        self.text += "# HELP \(full) \(help)\n# TYPE \(full) \(type.rawValue)\n\(full) \(value)\n"
        self.samples.append(Sample(name: full, type: type, labels: [], value: value))
    }

    /// Adds one labelled sample of a metric; HELP and TYPE are written with its first sample only (samples of
    /// one metric must be added one after another).
    public mutating func add(_ name: String, _ type: MetricType, _ help: String, _ value: Int, labels: [String: String]) {
        let full = self.prefix + name
        if self.lastLabelled != full {
            self.text += "# HELP \(full) \(help)\n# TYPE \(full) \(type.rawValue)\n"
            self.lastLabelled = full
        }
        let rendered = labels.sorted { $0.key < $1.key }.map { key, value in
            var escaped = ""
            for character in value {
                switch character {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                default: escaped.append(character)
                }
            }
            return "\(key)=\"\(escaped)\""
        }
        self.text += "\(full){\(rendered.joined(separator: ","))} \(value)\n"
        self.samples.append(Sample(name: full, type: type, labels: labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, value: value))
    }

    private var lastLabelled: String?

    /// A metric's type.
    public enum MetricType: String, Sendable {
        case counter, gauge
    }
}
