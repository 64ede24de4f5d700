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
    }

    private var lastLabelled: String?

    /// A metric's type.
    public enum MetricType: String, Sendable {
        case counter, gauge
    }
}
