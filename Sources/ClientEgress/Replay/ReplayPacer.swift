/// Paces a replay by the envelopes' own timestamps: realtime (factor 1), faster (factor > 1), or not at all.
public struct ReplayPacer: Sendable {
    /// How fast to replay.
    public enum Speed: Sendable, Hashable {
        /// As fast as possible.
        case max
        /// At `factor` × the recorded pace (1 = realtime).
        case factor(Double)

        /// Parses `max`, `realtime`, or a positive number.
        public init?(_ text: String) {
            switch text {
            case "max": self = .max
            case "realtime": self = .factor(1)
            default:
                guard let factor = Double(text), factor > 0, factor.isFinite else { return nil }
                self = .factor(factor)
            }
        }
    }

    public let speed: Speed
    private var firstTimestamp: Int64?
    private var start: ContinuousClock.Instant?

    /// The latest an event is ever scheduled after the first one: a recording's absurd timestamp does not
    /// stall a replay for years.
    static let maximumOffsetMilliseconds: Double = 86_400_000 * 365

    public init(speed: Speed) {
        self.speed = speed
    }

    /// Waits until the moment an event recorded at `timestamp` (Unix ms) is due.
    public mutating func wait(forTimestamp timestamp: Int64?) async throws {
        guard case .factor(let factor) = self.speed, let timestamp else { return }
        guard let first = self.firstTimestamp, let start = self.start else {
            self.firstTimestamp = timestamp
            self.start = .now
            return
        }
        // Timestamps come from the recording: checked arithmetic, and no wait beyond a day per event.
        let (elapsed, overflow) = timestamp.subtractingReportingOverflow(first)
        let offset = min(Double(overflow ? 0 : max(elapsed, 0)) / factor, Self.maximumOffsetMilliseconds)
        let due = start + .milliseconds(Int64(offset))
        if due > .now { try await Task.sleep(until: due, clock: .continuous) }
    }
}

/// Forwards envelopes to another sink, one at a time, each when its timestamp says it is due.
public final class PacedSink: EgressSink {
    private let inner: any EgressSink
    private let pacer: ReplayPacerBox

    public init(forwardingTo inner: any EgressSink, speed: ReplayPacer.Speed) {
        self.inner = inner
        self.pacer = ReplayPacerBox(ReplayPacer(speed: speed))
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        for record in records {
            try await self.pacer.wait(forTimestamp: EnvelopeFields.timestamp(of: record.envelope))
            try await self.inner.export(CollectionOfOne(record))
        }
    }

    public func forceFlush() async throws { try await self.inner.forceFlush() }
    public func shutdown() async { await self.inner.shutdown() }
}

/// The pacer's state, touched only by the (sequential) export path.
actor ReplayPacerBox {
    private var pacer: ReplayPacer

    init(_ pacer: ReplayPacer) {
        self.pacer = pacer
    }

    func wait(forTimestamp timestamp: Int64?) async throws {
        var pacer = self.pacer
        try await pacer.wait(forTimestamp: timestamp)
        self.pacer = pacer
    }
}
