/// One subscription as `GET /v1/subscriptions` lists it: what it follows, its state, and its counters.
public struct SubscriptionSnapshot: Sendable, Hashable, Codable {
    public var id: String
    /// The channel URL, with query values (tokens) redacted.
    public var eventsURL: String
    public var sessionID: String
    public var start: String
    /// `flag`, `config` or `api`.
    public var origin: String
    /// `waiting` (no data yet), `following`, `finished` (the channel ended), `stopped`, `failed`.
    public var state: String
    /// How it finished: `closed`, `not_found`, or the failure.
    public var end: String?
    /// Segments read.
    public var segments: Int
    /// Lines read.
    public var lines: Int
    /// Telemetry envelopes handed to the sink.
    public var events: Int
    /// Segments lost before they were read.
    public var gaps: Int
    /// The seq of the latest segment a line came from.
    public var lastSeq: Int?
    /// Lines skipped as malformed, not objects, or telemetry without an object event.
    public var malformed: Int
    /// Lines or segments over the cap.
    public var oversize: Int
    /// Reads retried after errors.
    public var retries: Int
    /// Times the channel came back after a server restart.
    public var reconnects: Int
    /// Lines skipped on resume because the spool had them already.
    public var skippedOnResume: Int
    /// The latest skipped input (reason and position, never payload).
    public var lastProblem: String?
    /// Why the server cannot be reached now, in words (a certificate problem names its cause and fix).
    public var connectionProblem: String? = nil

    enum CodingKeys: String, CodingKey {
        case id
        case eventsURL = "events_url"
        case sessionID = "session_id"
        case start, origin, state, end, segments, lines, events, gaps
        case lastSeq = "last_seq"
        case malformed, oversize, retries, reconnects
        case skippedOnResume = "skipped_on_resume"
        case lastProblem = "last_problem"
        case connectionProblem = "connection_problem"
    }
}
