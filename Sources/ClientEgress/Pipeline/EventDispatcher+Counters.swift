extension EventDispatcher {
    /// What a dispatcher saw, as a value.
    public struct Counters: Sendable, Hashable, Codable {
        /// Lines read (valid or not).
        public var lines = 0
        /// Telemetry envelopes handed to the egress sink.
        public var telemetry = 0
        /// Lines per top-level `type` (telemetry included).
        public var byType: [String: Int] = [:]
        /// Telemetry envelopes per `data.type`.
        public var byDataType: [String: Int] = [:]
        /// Lines that were not valid JSON (truncated last lines included).
        public var malformed = 0
        /// Valid JSON lines that were not objects.
        public var nonObject = 0
        /// `telemetry` lines whose `event` was missing or not an object.
        public var telemetryWithoutObjectEvent = 0
        /// Lines or segments over the cap, skipped.
        public var oversize = 0
        /// Batches the egress sink failed to take.
        public var sinkFailures = 0
        /// Telemetry envelopes in those batches: not delivered (without a spool, lost).
        public var sinkFailedEvents = 0
        /// Segments lost before they were read (no longer retained by the server).
        public var segmentsLost = 0
        /// Lines skipped after a restart because the spool already had them (at or before its resume position).
        public var skippedOnResume = 0
        /// The seq of the latest segment a line was read from (`nil` before the first; the highest, when
        /// counters of several channels are added up).
        public var lastSeq: Int?

        public init() {}
    }
}
