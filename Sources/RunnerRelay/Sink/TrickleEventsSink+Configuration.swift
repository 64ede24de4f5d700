public import Tracing
import TrickleProtocol
public import TrickleRelaySupport

extension TrickleEventsSink {
    /// Configuration of a ``TrickleEventsSink``.
    public struct Configuration: Sendable {
        /// Stamped into envelopes that lack session fields.
        public var identity: SessionIdentity
        /// Whether telemetry may be relayed at all (see ``TelemetryConsent``); when off, emitted events are
        /// counted as disabled and discarded.
        public var isTelemetryEnabled: Bool
        /// Whether string values are scrubbed (``Scrubber``). Default on.
        public var scrubs: Bool
        /// The scrubber's settings.
        public var scrubber: Scrubber.Configuration
        /// Most telemetry events queued; past it the oldest are dropped. Default 1,024.
        public var maximumQueuedEvents: Int
        /// Most telemetry bytes queued; past it the oldest are dropped. Default 16 MiB.
        public var maximumQueuedBytes: Int
        /// The events-channel line cap; an event whose framed line would exceed it is refused. Default 5 MiB.
        public var maximumLineBytes: Int
        /// Control-path lines queued before `sendControl` suspends (and `trySendControl` says no). Default 1,024.
        public var controlQueueCapacity: Int
        /// How often, at most, a `telemetry_dropped` report is relayed while drops happen. Default 1 s.
        public var dropReportInterval: Duration
        /// The relay's own tracer: each segment upload becomes a `trickle_relay.segment.publish` span. `nil`
        /// (the default) traces nothing.
        public var tracer: (any Tracer)? = nil
        /// What the drop-report interval is measured on: `ContinuousClock` unless a test passes a manual clock
        /// (`RelayClock(clock)`).
        public var clock: RelayClock = .continuous

        /// Creates a configuration; every parameter but the identity has the documented default.
        public init(
            identity: SessionIdentity,
            isTelemetryEnabled: Bool = true,
            scrubs: Bool = true,
            scrubber: Scrubber.Configuration = .init(),
            maximumQueuedEvents: Int = 1024,
            maximumQueuedBytes: Int = 16 * 1024 * 1024,
            maximumLineBytes: Int = 5 * 1024 * 1024,
            controlQueueCapacity: Int = 1024,
            dropReportInterval: Duration = .seconds(1)
        ) {
            self.identity = identity
            self.isTelemetryEnabled = isTelemetryEnabled
            self.scrubs = scrubs
            self.scrubber = scrubber
            self.maximumQueuedEvents = maximumQueuedEvents
            self.maximumQueuedBytes = maximumQueuedBytes
            self.maximumLineBytes = maximumLineBytes
            self.controlQueueCapacity = controlQueueCapacity
            self.dropReportInterval = dropReportInterval
        }
    }

    /// Counters of a sink, as a value.
    ///
    /// Accounting by construction: every telemetry event handed to the sink (``received``) ends in exactly one
    /// terminal counter — `relayed`, `lost`, `dropped`, `refused`, `invalid`, `disabled`, `writerErrors` — or is
    /// still on its way (``telemetryPending``); every control line accepted (``controlReceived``) in
    /// `controlRelayed` or `controlLost`, or on its way (``controlPending``). ``telemetryUnaccounted`` and
    /// ``controlUnaccounted`` are zero whenever the sink is between two steps (the tests assert it).
    public struct Stats: Sendable, Hashable, Codable {
        /// Telemetry events handed to the sink (`emit`), whatever became of them.
        public var received = 0
        /// Telemetry events handed to `emit` while enabled.
        public var emitted = 0
        /// Telemetry events handed to the events writer (into a segment upload).
        public var written = 0
        /// Telemetry events the server accepted: their segment's upload ended with `200` after its last byte.
        public var relayed = 0
        /// Telemetry events written into segments whose upload failed (server gone, connection cut): counted
        /// here and reported downstream in the next `telemetry_dropped` envelope (`lost`).
        public var lost = 0
        /// Telemetry events evicted (oldest first) because the queue was full.
        public var dropped = 0
        /// Bytes of the dropped events.
        public var droppedBytes = 0
        /// Events refused because their framed line would exceed the cap.
        public var refused = 0
        /// Events that were not a JSON object or had no `type`.
        public var invalid = 0
        /// Events discarded because telemetry is disabled.
        public var disabled = 0
        /// Strings redacted by the scrubber.
        public var redactions = 0
        /// W3C trace context values (`traceparent`, `tracestate`) dropped as malformed: never forwarded.
        public var traceContextInvalid = 0
        /// Control-path lines accepted (queued, or sent after the drain ended and so lost).
        public var controlReceived = 0
        /// Control-path lines written into segments.
        public var controlWritten = 0
        /// Control-path lines the server accepted (their segment's upload ended with `200`).
        public var controlRelayed = 0
        /// Bytes written onto the channel (framed lines with their newline).
        public var bytesWritten = 0
        /// Telemetry events the writer failed to take (the publisher had stopped: the session is over).
        public var writerErrors = 0
        /// Control-path lines that could not be written, or were written into segments whose upload failed: the
        /// control path is lossless while the channel lives, so this counts only what a dead or refusing channel
        /// left behind.
        public var controlLost = 0
        /// `telemetry_dropped` reports relayed.
        public var dropReports = 0
        /// Telemetry events waiting in the queue now.
        public var queuedEvents = 0
        /// Bytes waiting in the queue now.
        public var queuedBytes = 0
        /// Control-path lines waiting in their queue now.
        public var queuedControl = 0

        /// Telemetry on its way: queued, or written into a segment whose upload has not ended.
        public var telemetryPending: Int { self.queuedEvents + self.written - self.relayed - self.lost }
        /// Control lines on their way: queued, or written into a segment whose upload has not ended.
        public var controlPending: Int { self.queuedControl + self.controlWritten - self.controlRelayed - self.controlLostInSegments }
        /// Part of ``controlLost``: lines written into segments whose upload failed.
        public var controlLostInSegments = 0

        /// Received telemetry in no terminal counter and not on its way: zero unless an event was miscounted.
        public var telemetryUnaccounted: Int {
            self.received
                - (self.relayed + self.lost + self.dropped + self.refused + self.invalid + self.disabled + self.writerErrors)
                - self.telemetryPending
        }
        /// Accepted control lines neither relayed, lost nor on their way: zero unless a line was miscounted.
        public var controlUnaccounted: Int { self.controlReceived - (self.controlRelayed + self.controlLost) - self.controlPending }

        public init() {}
    }
}
