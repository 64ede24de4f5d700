public import NIOCore

/// One relayed telemetry envelope, exactly as the runner sent it.
public struct TelemetryRecord: Sendable {
    /// The envelope's bytes: byte-exact, never decoded and re-encoded.
    public var envelope: ByteBuffer
    /// The segment it arrived in (`-1` when not from a channel).
    public var seq: Int
    /// Its line number within the segment (or file).
    public var lineNumber: Int

    public init(envelope: ByteBuffer, seq: Int, lineNumber: Int) {
        self.envelope = envelope
        self.seq = seq
        self.lineNumber = lineNumber
    }
}

/// Where relayed telemetry goes on the user's machine: a log, a file, an HTTP metrics API, Kafka…
///
/// A sink receives envelopes in batches, in channel order, and must not alter their bytes.
public protocol EgressSink: Sendable {
    /// Takes a batch of envelopes. Throws when the batch could not be taken (the caller counts it).
    func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws
    /// Pushes out anything buffered.
    func forceFlush() async throws
    /// Flushes and releases resources; no export follows.
    func shutdown() async
}

/// A sink whose ``EgressSink/export(_:)`` returns before the remote side has accepted the records (it buffers
/// and sends later), and that reports when they are settled — accepted, or deliberately dropped and reported
/// (a 400, an event too large to send). A ``SpooledSink`` deletes spool segments only behind settled records.
public protocol SettlingEgressSink: EgressSink {
    /// Installs `handler`, called with the number of records exported so far that are settled, in export
    /// order (a record is settled only once every record exported before it is). Install before exporting.
    func onSettled(_ handler: @escaping @Sendable (Int) -> Void)
    /// Records exported and not settled yet that the sink holds at most (more are counted as overflow).
    var maximumUnsettledRecords: Int { get }
}
