public import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import Logging
public import NIOCore
public import ServiceLifecycle
import TrickleRelaySupport

/// Writes JSON Lines onto a trickle channel (the events channel convention, `trickle-protocol.md` §8).
///
/// Segments rotate on a time window **and** before a line would push a segment past the cap, so a reader with
/// that cap never fails (the SDK's writer rotates on time only, §10.9). A line is never split across segments;
/// a single line over the cap is refused with ``JSONLWriterError/Code/lineTooLarge`` and nothing is written.
/// Only strict JSON objects are written: a line is validated (no bare `NaN`/`Infinity`, no newline inside).
///
/// ``run()`` must run while writing; ``close()`` ends the open segment and deletes the channel, so readers see
/// end of stream (as the SDK's writer does). Graceful shutdown closes the writer.
public final class JSONLWriter: Service, Sendable {
    /// Configuration of a ``JSONLWriter``.
    public struct Configuration: Sendable {
        /// A segment is closed once it has been open this long. Default 10 s (the SDK's `segment_interval`).
        public var segmentWindow: Duration
        /// No segment grows past this many bytes. Default 5 MiB (5,242,880 bytes).
        public var maximumSegmentBytes: Int
        /// The publisher's settings; its MIME type defaults to `application/jsonl`.
        public var publisher: TricklePublisher.Configuration
        /// Whether graceful shutdown closes the writer. Default `true`; an owner that must flush its own
        /// queue first (a session relay) turns it off and calls ``JSONLWriter/close()`` itself.
        public var closesOnGracefulShutdown: Bool

        /// Creates a configuration; every parameter has the documented default.
        public init(
            segmentWindow: Duration = .seconds(10),
            maximumSegmentBytes: Int = 5 * 1024 * 1024,
            publisher: TricklePublisher.Configuration = .init(mimeType: "application/jsonl"),
            closesOnGracefulShutdown: Bool = true
        ) {
            self.segmentWindow = segmentWindow
            self.maximumSegmentBytes = maximumSegmentBytes
            self.publisher = publisher
            self.closesOnGracefulShutdown = closesOnGracefulShutdown
        }
    }

    /// The configuration.
    public let configuration: Configuration
    /// The publisher underneath (for its stats).
    public let publisher: TricklePublisher
    private let closeRequested = OneShotSignal<Void>()

    /// Creates a writer for the channel at `url`.
    public init(url: TrickleChannelURL, httpClient: HTTPClient, configuration: Configuration = .init(), logger: Logger) {
        self.configuration = configuration
        self.publisher = TricklePublisher(
            url: url,
            httpClient: httpClient,
            configuration: configuration.publisher,
            logger: logger
        )
    }

    /// Runs the uploads and the time-window rotation until ``close()`` (or graceful shutdown, which closes).
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.rotateOnWindow() }
                group.addTask {
                    guard await self.closeRequested.wait() != nil else { return }
                    try await self.publisher.close()
                }
                // The publisher's run() ends once it is closed (and its last uploads are done); the other
                // tasks then have nothing left to do.
                try await self.publisher.run()
                group.cancelAll()
                while let _ = try? await group.next() {}
            }
        } onGracefulShutdown: {
            if self.configuration.closesOnGracefulShutdown { self.closeRequested.fulfill(()) }
        }
    }

    /// How a written line is counted into its segment, for ``TricklePublisher/SegmentOutcome``: how a caller
    /// learns which of its lines the server accepted (`units`) and which were lost with a failed upload.
    public enum LineTally: Sendable, Hashable {
        /// Not counted.
        case uncounted
        /// Counted in the outcome's `units` (the events channel: telemetry).
        case unit
        /// Counted in the outcome's `otherUnits` (the events channel: control events).
        case otherUnit
    }

    /// Writes one line: `line` must be one strict JSON object without a newline (one is appended).
    ///
    /// - Throws: ``JSONLWriterError`` — `.lineTooLarge`, `.invalidJSON`, `.notAnObject`, `.containsNewline`
    ///   (nothing written), `.closed`, `.publishFailed` (nothing written). Once this returns, the line is in a
    ///   segment: whether the server took it is that segment's outcome.
    ///
    /// - Parameter tally: How the line counts into its segment's outcome.
    public func write(line: ByteBuffer, tally: LineTally = .uncounted) async throws(JSONLWriterError) {
        try self.check(line)
        var framed = line
        framed.writeInteger(UInt8(ascii: "\n"))
        try await self.publish(framed, lines: 1, tally: tally)
    }

    /// What became of a batch of lines (``write(lines:tally:)``): every line is in exactly one of `written`,
    /// `rejected`, or after `failure` stopped the batch.
    public struct BatchResult: Sendable {
        /// Lines handed to segments, in order (the server's answer comes with each segment's outcome).
        public var written = 0
        /// Lines that failed the line checks and were skipped (index into the batch, and why).
        public var rejected: [(index: Int, error: JSONLWriterError)] = []
        /// Why the batch stopped early (`.closed`, `.publishFailed`): the lines not written and not rejected.
        public var failure: JSONLWriterError?

        /// Lines neither written nor rejected: what `failure` left behind.
        public func unwritten(of count: Int) -> Int { count - self.written - self.rejected.count }
    }

    /// Writes several lines at once (one upload write per up to 256 KiB instead of one per line: the way to keep
    /// up with tens of thousands of lines a second). Each line is checked as ``write(line:tally:)`` checks it; a
    /// line that fails is skipped and reported in the result, the others are written in order. Segments still
    /// rotate only between lines. A publisher failure stops the batch and is reported, never thrown, with how
    /// far it got, so the caller's counters add up.
    ///
    /// - Parameter tally: How each written line counts into its segment's outcome.
    @discardableResult
    public func write(lines: [ByteBuffer], tally: LineTally = .uncounted) async -> BatchResult {
        var result = BatchResult()
        let chunkLimit = min(256 * 1024, self.configuration.maximumSegmentBytes)
        var chunk = ByteBuffer()
        var chunkLines = 0
        for (index, line) in lines.enumerated() {
            let size = line.readableBytes + 1
            do throws(JSONLWriterError) {
                try self.check(line)
            } catch {
                result.rejected.append((index, error))
                continue
            }
            if chunk.readableBytes > 0, chunk.readableBytes + size > chunkLimit {
                do throws(JSONLWriterError) {
                    try await self.publish(chunk, lines: chunkLines, tally: tally)
                } catch {
                    result.failure = error
                    // The rest of the batch is not written; lines after this one that would fail the checks
                    // are still unwritten, not rejected (the caller counts them with the failure).
                    return result
                }
                result.written += chunkLines
                chunk.clear()
                chunkLines = 0
            }
            if chunk.capacity == 0 { chunk.reserveCapacity(min(chunkLimit, max(size, 64 * 1024))) }
            chunk.writeImmutableBuffer(line)
            chunk.writeInteger(UInt8(ascii: "\n"))
            chunkLines += 1
        }
        if chunk.readableBytes > 0 {
            do throws(JSONLWriterError) {
                try await self.publish(chunk, lines: chunkLines, tally: tally)
                result.written += chunkLines
            } catch {
                result.failure = error
            }
        }
        return result
    }

    /// Publishes whole framed lines (never more than a segment holds).
    private func publish(_ framed: ByteBuffer, lines: Int, tally: LineTally) async throws(JSONLWriterError) {
        do {
            try await self.publisher.write(
                framed,
                maximumSegmentBytes: self.configuration.maximumSegmentBytes,
                units: tally == .unit ? lines : 0,
                otherUnits: tally == .otherUnit ? lines : 0
            )
        } catch {
            if error.code == .channelClosed, self.closeRequested.value != nil {
                throw JSONLWriterError(.closed, "the writer was closed")
            }
            throw JSONLWriterError(.publishFailed, error.message, publisherError: error)
        }
    }

    /// Encodes `value` with `JSONEncoder` (which refuses non-finite numbers) and writes it as one line.
    public func write(_ value: some Encodable) async throws(JSONLWriterError) {
        let data: Data
        do {
            data = try JSONEncoder().encode(value)
        } catch {
            throw JSONLWriterError(.invalidJSON, "value could not be encoded as strict JSON: \(error)")
        }
        try await self.write(line: ByteBuffer(bytes: data), tally: .uncounted)
    }

    /// Ends the current segment now (readers see its end); the next write opens a new one.
    public func flush() async {
        await self.publisher.finishSegment()
    }

    /// Ends the open segment, waits for it to be sent, and deletes the channel; ``run()`` then returns.
    public func close() async throws {
        self.closeRequested.fulfill(())
        try await self.publisher.close()
    }

    private func rotateOnWindow() async throws {
        let tick = max(self.configuration.segmentWindow / 20, .milliseconds(5))
        while true {
            try await self.publisher.configuration.clock.sleep(for: tick)
            await self.publisher.finishSegment(ifOpenFor: self.configuration.segmentWindow)
        }
    }

    /// A line fits a segment (with its newline) and is one strict JSON object without a newline.
    private func check(_ line: ByteBuffer) throws(JSONLWriterError) {
        let size = line.readableBytes + 1
        guard size <= self.configuration.maximumSegmentBytes else {
            throw JSONLWriterError(
                .lineTooLarge,
                "line of \(size) bytes (with its newline) exceeds the \(self.configuration.maximumSegmentBytes)-byte segment cap"
            )
        }
        try Self.validate(line)
    }

    static func validate(_ line: ByteBuffer) throws(JSONLWriterError) {
        switch JSONScanner.kind(of: line) {
        case .success(.object):
            if line.readableBytesView.contains(0x0A) {
                throw JSONLWriterError(.containsNewline, "a JSONL line must not contain a newline byte")
            }
        case .success(let kind):
            throw JSONLWriterError(.notAnObject, "an events-channel line must be a JSON object, got \(kind)")
        case .failure(let error):
            throw JSONLWriterError(.invalidJSON, "line is not strict JSON: \(error)")
        }
    }
}
