import Synchronization
import TrickleRelaySupport

/// The embedded server's resource bounds and counters: retained segment bytes (reserved as bodies arrive,
/// released when a segment is freed), live channels, and every refusal by reason — for `/metrics` and for the
/// answers that enforce the bounds (`503` with `Retry-After`, STYLE §6).
final class ServerAccounting: Sendable {
    /// Why a request was refused.
    enum Refusal: Int, CaseIterable, Sendable {
        case badRequest, unauthorized, channelLimit, retainedBytesLimit, segmentTooLarge, notFound

        var label: String {
            switch self {
            case .badRequest: return "bad_request"
            case .unauthorized: return "unauthorized"
            case .channelLimit: return "channel_limit"
            case .retainedBytesLimit: return "retained_bytes_limit"
            case .segmentTooLarge: return "segment_too_large"
            case .notFound: return "not_found"
            }
        }
    }

    let maximumRetainedBytes: Int
    private let retained = Atomic<Int>(0)
    private let refusals = RelayMutex([Int](repeating: 0, count: Refusal.allCases.count))  // refusals are rare
    private let segmentsStarted = Atomic<Int>(0)
    private let bytesReceived = Atomic<Int>(0)
    /// The most bytes held at once since the last ``takeReleasedSinceHighWater()``.
    private let highWater = Atomic<Int>(0)

    init(maximumRetainedBytes: Int) {
        self.maximumRetainedBytes = maximumRetainedBytes
    }

    /// Bytes held in retained segments right now (including segments a reader still streams).
    var retainedBytes: Int { self.retained.load(ordering: .relaxed) }

    /// Reserves `count` bytes; `false` when that would pass ``maximumRetainedBytes``.
    func reserve(_ count: Int) -> Bool {
        var current = self.retained.load(ordering: .relaxed)
        while true {
            let (sum, overflow) = current.addingReportingOverflow(count)
            guard !overflow, sum <= self.maximumRetainedBytes else { return false }
            let (exchanged, original) = self.retained.compareExchange(expected: current, desired: sum, ordering: .relaxed)
            if exchanged {
                self.bytesReceived.wrappingAdd(count, ordering: .relaxed)
                // Racy on purpose (a heuristic for when to give memory back): one load per chunk, a store only
                // when the mark rises.
                if sum > self.highWater.load(ordering: .relaxed) { self.highWater.store(sum, ordering: .relaxed) }
                return true
            }
            current = original
        }
    }

    /// How far the held bytes fell below their high-water mark; resets the mark to what is held now.
    func takeReleasedSinceHighWater() -> Int {
        let now = self.retained.load(ordering: .relaxed)
        let peak = self.highWater.exchange(now, ordering: .relaxed)
        return max(peak - now, 0)
    }

    /// Releases bytes reserved earlier (a segment was freed).
    func release(_ count: Int) {
        self.retained.subtract(count, ordering: .relaxed)
    }

    func count(_ refusal: Refusal) { self.refusals.withLock { $0[refusal.rawValue] &+= 1 } }
    func refused(_ refusal: Refusal) -> Int { self.refusals.withLock { $0[refusal.rawValue] } }
    func noteSegmentStarted() { self.segmentsStarted.wrappingAdd(1, ordering: .relaxed) }
    var segments: Int { self.segmentsStarted.load(ordering: .relaxed) }
    var bytes: Int { self.bytesReceived.load(ordering: .relaxed) }
}
