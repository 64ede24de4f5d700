public import NIOCore
import TrickleRelaySupport

/// Frames a byte stream of JSON Lines (standard input, a file, a request body) and hands each frame on, in
/// order, including an unterminated last line at the end (its `isTerminated` is `false`: the caller decides
/// whether a possibly truncated tail counts). The one framing loop of `publish`, `replay --to` and the runner's
/// line ingest.
public enum JSONLPump {
    /// Reads `input` to its end.
    ///
    /// - Parameters:
    ///   - maximumLineBytes: Longer lines come as ``JSONLFramer/Frame/oversizeLine(number:bytes:)``.
    ///   - handle: Called for every frame; a throw ends the pump.
    public static func forEachFrame(
        in input: some AsyncSequence<ByteBuffer, any Error>,
        maximumLineBytes: Int,
        _ handle: (JSONLFramer.Frame) async throws -> Void
    ) async throws {
        var framer = JSONLFramer(maximumLineBytes: maximumLineBytes)
        var frames: [JSONLFramer.Frame] = []
        for try await chunk in input {
            framer.feed(chunk, into: &frames)
            for frame in frames { try await handle(frame) }
            frames.removeAll(keepingCapacity: true)
        }
        framer.finish(into: &frames)
        for frame in frames { try await handle(frame) }
    }
}
