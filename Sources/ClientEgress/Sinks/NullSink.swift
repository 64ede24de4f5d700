import NIOCore
import Synchronization
import TrickleRelaySupport

/// Counts what it is given and keeps nothing: for benchmarks.
public final class NullSink: EgressSink {
    private let counts = RelayMutex((records: 0, bytes: 0))

    public init() {}

    /// Envelopes and bytes taken so far.
    public var taken: (records: Int, bytes: Int) { self.counts.withLock { $0 } }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        var bytes = 0
        for record in records { bytes += record.envelope.readableBytes }
        let batchBytes = bytes
        self.counts.withLock {
            $0.records += records.count
            $0.bytes += batchBytes
        }
    }

    public func forceFlush() async throws {}
    public func shutdown() async {}
}
