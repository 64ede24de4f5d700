import Foundation

/// The fault suite's oracle: what the runner was given (numbered events), what the egress received, and what the
/// runner said it could not relay (the `telemetry_dropped` envelopes that reached the egress too).
struct DeliveryOracle {
    /// One scenario's result row.
    struct Row: CustomStringConvertible {
        var scenario: String
        var events: Int
        var faults: String
        var delivered: Int
        var duplicates: Int
        var countedDrops: Int
        var unexplained: Int
        var peakRSS: [String: Int]

        var description: String {
            let memory = self.peakRSS.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value / 1_048_576) MiB" }.joined(separator: ", ")
            return "| \(self.scenario) | \(self.events) | \(self.faults) | \(self.delivered) | \(self.duplicates) | \(self.countedDrops) | \(self.unexplained) | \(memory) |"
        }
    }

    var emitted: Int
    /// seqno → how many times it arrived.
    private(set) var arrivals: [Int: Int] = [:]
    private(set) var countedDrops = 0
    /// The runner's own telemetry (`relay_ready`, `relay_heartbeat`) that arrived: it shares the queue with the
    /// numbered events, so under overload it can be among the dropped too.
    private(set) var selfTelemetryDelivered = 0
    /// The part of ``countedDrops`` that is `lost`: events in uploads that failed without an acknowledgement. Some
    /// of them may have reached the server before the failure, so they can be both counted and delivered.
    private(set) var countedLost = 0
    private(set) var unparsable = 0
    private var envelopeIDs: Set<String> = []
    /// Envelopes that arrived more than once (same `id`), drop reports included.
    private(set) var repeatedEnvelopes = 0
    /// Each `telemetry_dropped` report as `dropped/refused/lost`, in arrival order (for a failure message).
    private(set) var dropReports: [String] = []

    init(emitted: Int) {
        self.emitted = emitted
    }

    /// Notes one envelope (one JSON object) as the egress received it.
    mutating func receive(envelope text: Substring) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let data = object["data"] as? [String: Any]
        else {
            self.unparsable += 1
            return
        }
        if let id = object["id"] as? String, !self.envelopeIDs.insert(id).inserted {
            // The same envelope twice (an at-least-once re-delivery): a consumer deduplicates by id.
            self.repeatedEnvelopes += 1
            if data["type"] as? String == "telemetry_dropped" { return }
        }
        if data["type"] as? String == "telemetry_dropped" {
            let counts = ["dropped", "refused", "lost"].map { (data[$0] as? Int) ?? 0 }
            self.countedDrops += counts.reduce(0, +)
            self.countedLost += counts[2]
            self.dropReports.append(counts.map(String.init).joined(separator: "/"))
        } else if let seqno = data["seqno"] as? Int {
            self.arrivals[seqno, default: 0] += 1
        } else if let type = data["type"] as? String, type == "relay_ready" || type == "relay_heartbeat" {
            self.selfTelemetryDelivered += 1
        }
    }

    /// Notes every line of a file sink's output.
    mutating func receive(file path: String) throws {
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") { self.receive(envelope: line) }
    }

    var delivered: Int { self.arrivals.count }
    var duplicates: Int { self.arrivals.values.reduce(0) { $0 + $1 - 1 } }
    var missing: [Int] { (0..<self.emitted).filter { self.arrivals[$0] == nil } }
    /// Emitted events neither delivered nor counted as dropped: must be 0.
    var unexplained: Int { max(self.emitted - self.delivered - self.countedDrops, 0) + self.unparsable }

    func row(_ scenario: String, faults: String, peakRSS: [String: Int]) -> Row {
        Row(
            scenario: scenario,
            events: self.emitted,
            faults: faults,
            delivered: self.delivered,
            duplicates: self.duplicates,
            countedDrops: self.countedDrops,
            unexplained: self.unexplained,
            peakRSS: peakRSS
        )
    }
}

/// The fault suite's profile: `TRICKLE_RELAY_FAULTS=short` (CI) or `long`; unset skips the suite.
enum FaultProfile: String {
    case short, long

    static var current: Self? { ProcessInfo.processInfo.environment["TRICKLE_RELAY_FAULTS"].flatMap(Self.init(rawValue:)) }
    static var isEnabled: Bool { self.current != nil }

    /// How many times slower than normal the events are fed: `TRICKLE_RELAY_FAULTS_PACE` (default 1). A sanitizer
    /// build runs every process several times slower; CI's AddressSanitizer run feeds at a quarter of the rate so
    /// the scenarios test faults, not a machine too slow for the normal rates.
    static var pace: Int {
        ProcessInfo.processInfo.environment["TRICKLE_RELAY_FAULTS_PACE"].flatMap(Int.init).map { min(max($0, 1), 100) } ?? 1
    }

    /// Appends a result row to `TRICKLE_RELAY_FAULTS_REPORT` (default `.build/fault-suite.md`) and prints it.
    static func report(_ row: DeliveryOracle.Row) {
        print("FAULT-SUITE \(row)")
        let path = ProcessInfo.processInfo.environment["TRICKLE_RELAY_FAULTS_REPORT"] ?? "/tmp/trickle-relay-fault-suite.md"
        if let handle = FileHandle(forWritingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil) {
            handle.seekToEndOfFile()
            handle.write(Data("\(row)\n".utf8))
            try? handle.close()
        }
    }
}
