import NIOCore

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

    /// - Parameter predecessor: The upload of the previous seq, if still in flight: this body waits for it.
    init(seq: Int, sendsReset: Bool, maximumBufferedBytes: Int, predecessor: SegmentUpload?) {
        self.seq = seq
        self.sendsReset = sendsReset
        self.pipe = SegmentBodyPipe(highWatermark: maximumBufferedBytes, predecessor: predecessor?.done)
    }
}
