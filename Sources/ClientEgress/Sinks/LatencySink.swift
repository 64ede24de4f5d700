#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TrickleRelaySupport

/// Counts delivered envelopes and their latency: envelope `timestamp` (Unix ms, stamped on the runner) to
/// arrival here, in whole milliseconds (the timestamp's resolution). Memory is fixed: a histogram of 1 ms buckets
/// up to 60 s, and one bucket beyond. For the demo's live status line; the benchmark measures in nanoseconds.
public final class LatencySink: EgressSink {
    /// Delivered envelopes and latency percentiles (ms) so far.
    public struct Snapshot: Sendable {
        public var delivered: Int
        public var p50: Int64
        public var p99: Int64
    }

    private static let buckets = 60_000

    private struct State {
        var delivered = 0
        var measured = 0
        var histogram = [Int](repeating: 0, count: LatencySink.buckets + 1)
    }

    private let state = RelayMutex(State())
    /// Envelopes stamped before this (recorded envelopes a fixture replays as they are) carry their recording
    /// time, not their send time: they are delivered and counted, but not in the latency figures.
    private let startMilliseconds = Int64(Date().timeIntervalSince1970 * 1000) - 1_000

    public init() {}

    public var snapshot: Snapshot {
        self.state.withLock { state in
            func percentile(_ fraction: Double) -> Int64 {
                guard state.measured > 0 else { return 0 }
                let rank = min(state.measured - 1, Int(Double(state.measured) * fraction))
                var seen = 0
                for (milliseconds, count) in state.histogram.enumerated() {
                    seen += count
                    if seen > rank { return Int64(milliseconds) }
                }
                return Int64(Self.buckets)
            }
            return Snapshot(delivered: state.delivered, p50: percentile(0.5), p99: percentile(0.99))
        }
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let start = self.startMilliseconds
        let latencies = records.compactMap { record in
            EnvelopeFields.timestamp(of: record.envelope).flatMap { $0 >= start ? max(now - $0, 0) : nil }
        }
        self.state.withLock { state in
            state.delivered += records.count
            state.measured += latencies.count
            for latency in latencies { state.histogram[Int(min(latency, Int64(Self.buckets)))] += 1 }
        }
    }

    public func forceFlush() async throws {}
    public func shutdown() async {}
}
