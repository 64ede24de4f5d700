public import NIOCore
public import ServiceLifecycle

/// One relayed telemetry envelope, exactly as the runner sent it.
public struct TelemetryRecord: Sendable {
    /// The envelope's bytes: byte-exact, never decoded and re-encoded.
    public var envelope: ByteBuffer
    /// The segment it arrived in (`-1` when not from a channel).
    public var seq: Int
    /// Its line number within the segment (or file).
    public var lineNumber: Int
    /// The id of the subscription (the channel) it arrived on; empty when not from a daemon's subscription.
    /// A spool keeps it, so read positions stay per channel.
    public var subscription: String

    public init(envelope: ByteBuffer, seq: Int, lineNumber: Int, subscription: String = "") {
        self.envelope = envelope
        self.seq = seq
        self.lineNumber = lineNumber
        self.subscription = subscription
    }
}

/// Where relayed telemetry goes on the user's machine: a log, a file, an HTTP metrics API, Kafka…
///
/// A sink receives envelopes in batches, in channel order, and must not alter their bytes.
///
/// A sink is a `Service` (as swift-otel's exporters are): ``run()`` does its background work (a reporter's
/// sending loop, a spool's delivery loop, a producer's poll loop) and returns after ``shutdown()``. Sinks with
/// no background work keep the default, which returns at once. The owner (a ``ClientDaemon``) runs the sink,
/// exports to it, and calls ``shutdown()`` after its last export — a sink is never stopped by a service
/// group's graceful shutdown while lines are still being handed to it.
public protocol EgressSink: Service {
    /// Takes a batch of envelopes. Throws when the batch could not be taken (the caller counts it).
    ///
    /// It runs where its caller runs (`nonisolated(nonsending)`: a followed channel's event loop), so it must not
    /// block: a large or synced write goes to the blocking pool, a wait for room suspends.
    nonisolated(nonsending) func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws
    /// Pushes out anything buffered.
    func forceFlush() async throws
    /// Flushes and releases resources; no export follows. ``run()`` returns after it.
    func shutdown() async
}

extension EgressSink {
    /// No background work: returns at once.
    public func run() async throws {}
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
    /// Installs `handler`, called just before each request goes out with the ordinals (in export order, as
    /// counted by ``onSettled(_:)``) of the first and the last record it carries. A ``SpooledSink`` records the
    /// extent, so that after a crash the same request is sent again first. Install before exporting.
    func onSending(_ handler: @escaping @Sendable (_ first: Int, _ last: Int) -> Void)
}

extension SettlingEgressSink {
    /// Requests are not reported (a sink whose requests are not idempotent by their records).
    public func onSending(_ handler: @escaping @Sendable (_ first: Int, _ last: Int) -> Void) {}
}
