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
