/// The runner's end-of-session report: where every event went, as one human line that adds up.
///
/// Telemetry and control each read as an equation — received = the terminal counters + what is still on its
/// way — so an operator (and a test) can check that nothing went missing without being counted.
public struct SessionReport: Sendable {
    public var summary: SessionRelay.Summary
    /// What standard input held, when the session read it (`nil` for an ingest-API session).
    public var input: LineIngest.Counts?

    public init(summary: SessionRelay.Summary, input: LineIngest.Counts? = nil) {
        self.summary = summary
        self.input = input
    }

    /// Whether the sink's counters add up (they always should; a mismatch is a bug to report).
    public var isBalanced: Bool { self.summary.sink.telemetryUnaccounted == 0 && self.summary.sink.controlUnaccounted == 0 }

    /// The events the relay itself emitted (`relay_ready`, heartbeats, `telemetry_dropped` is not among them:
    /// it is a report, not received telemetry), when the input's telemetry count is known.
    public var ownTelemetry: Int? {
        guard let input else { return nil }
        return self.summary.sink.received - input.telemetry
    }

    /// One line: `session S: relayed R telemetry and C control events in N segments; telemetry received … = …;
    /// control received … = …; input …`.
    public var text: String {
        let sink = self.summary.sink
        let unconfirmed = sink.written - sink.relayed - sink.lost
        let controlUnconfirmed = sink.controlWritten - sink.controlRelayed - sink.controlLostInSegments
        var received = "telemetry received \(sink.received)"
        if let input, let own = self.ownTelemetry { received += " (\(input.telemetry) from input, \(own) the relay's own)" }
        var parts = [
            "session \(self.summary.sessionID): relayed \(sink.relayed) telemetry and \(sink.controlRelayed) control events in \(self.summary.segments) segments",
            "\(received) = relayed \(sink.relayed) + lost \(sink.lost) (in failed uploads) + dropped \(sink.dropped) + refused \(sink.refused) + invalid \(sink.invalid) + disabled \(sink.disabled) + writer errors \(sink.writerErrors) + queued \(sink.queuedEvents) (never sent) + unconfirmed \(unconfirmed) (no answer from the server: may be lost)",
            "control received \(sink.controlReceived) = relayed \(sink.controlRelayed) + lost \(sink.controlLost) + queued \(sink.queuedControl) + unconfirmed \(controlUnconfirmed)",
        ]
        if let input {
            parts.append("\(input.invalid + input.oversize) input lines skipped of \(input.lines) (\(input.invalid) invalid, \(input.oversize) over the line cap)")
        }
        if sink.traceContextInvalid > 0 { parts.append("malformed trace context values dropped \(sink.traceContextInvalid)") }
        if !self.summary.flushedInTime { parts.append("the final flush ran out of time") }
        if !self.isBalanced { parts.append("COUNTERS DO NOT ADD UP (a bug: please report it with this line)") }
        return parts.joined(separator: "; ")
    }
}
