import NIOCore
import Synchronization
import TrickleRelaySupport

/// One segment POST of a ``TricklePublisher``: its seq, its streamed body, and how it ended.
final class SegmentUpload: Sendable {
    /// How the upload ended.
    enum Result: Sendable, Equatable {
        case completed
        case failed
    }

    let seq: Int
    let sendsReset: Bool
    let pipe: SegmentBodyPipe
    let done = OneShotSignal<Result>()
    /// Set once this upload's requests stopped reaching the server in order — an attempt failed (a server gone or
    /// restarting), or it waits behind an earlier seq that is held back: the next seq's requests then wait until
    /// this one ended, so a restarted server sees seqs in order.
    let isHeldBack = Atomic<Bool>(false)
    /// How the previous seq's upload ended, once it has: a retried request waits for it (see `perform`).
    let predecessorDone: OneShotSignal<Result>?
    /// The previous seq's ``isHeldBack`` (its flag only: an upload never keeps the one before alive).
    let predecessorHeldBack: HeldBackFlag?
    /// Units (e.g. telemetry lines) the writer counted into this segment, reported with its outcome.
    private let units = Atomic<Int>(0)
    private let otherUnits = Atomic<Int>(0)
    private let onOutcome: (@Sendable (TricklePublisher.SegmentOutcome) -> Void)?
    /// When the segment was opened (Unix ns), for a trace span of its upload.
    private let openedAtNanos = WallClock.unixNanoseconds()

    /// - Parameter predecessor: The upload of the previous seq, if still in flight: this body waits for it.
    init(
        seq: Int,
        sendsReset: Bool,
        maximumBufferedBytes: Int,
        retentionLimit: Int = 0,
        predecessor: SegmentUpload?,
        onOutcome: (@Sendable (TricklePublisher.SegmentOutcome) -> Void)? = nil
    ) {
        self.seq = seq
        self.sendsReset = sendsReset
        self.predecessorDone = predecessor?.done
        self.predecessorHeldBack = predecessor.map { HeldBackFlag($0) }
        self.pipe = SegmentBodyPipe(highWatermark: maximumBufferedBytes, retentionLimit: retentionLimit, predecessor: predecessor?.done)
        self.onOutcome = onOutcome
    }

    /// Counts units into this segment (call after its bytes were appended).
    func add(units count: Int, otherUnits otherCount: Int = 0) {
        if count > 0 { self.units.wrappingAdd(count, ordering: .relaxed) }
        if otherCount > 0 { self.otherUnits.wrappingAdd(otherCount, ordering: .relaxed) }
    }

    /// Ends the upload once: wakes waiters and reports the outcome with the units it carried.
    func complete(_ result: Result) {
        guard self.done.fulfill(result) else { return }
        self.onOutcome?(
            .init(
                seq: self.seq,
                accepted: result == .completed,
                units: self.units.load(ordering: .relaxed),
                otherUnits: self.otherUnits.load(ordering: .relaxed),
                openedAtNanos: self.openedAtNanos
            )
        )
    }
}

/// Reads whether an upload is held back, without keeping the upload (or its body) alive.
final class HeldBackFlag: Sendable {
    private weak let upload: SegmentUpload?

    init(_ upload: SegmentUpload) { self.upload = upload }

    /// `false` once the upload is gone (it ended: nothing to wait for).
    var isSet: Bool { self.upload?.isHeldBack.load(ordering: .acquiring) ?? false }
}
