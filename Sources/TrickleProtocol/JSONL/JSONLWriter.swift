public import AsyncHTTPClient
import Foundation
public import Logging
public import NIOCore
public import ServiceLifecycle

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

    /// Writes one line: `line` must be one strict JSON object without a newline (one is appended).
    ///
    /// - Throws: ``JSONLWriterError`` — `.lineTooLarge`, `.invalidJSON`, `.notAnObject`, `.containsNewline`
    ///   (nothing written), `.closed`, `.publishFailed`.
    public func write(line: ByteBuffer) async throws(JSONLWriterError) {
        let size = line.readableBytes + 1
        guard size <= self.configuration.maximumSegmentBytes else {
            throw JSONLWriterError(
                .lineTooLarge,
                "line of \(size) bytes (with its newline) exceeds the \(self.configuration.maximumSegmentBytes)-byte segment cap"
            )
        }
        try Self.validate(line)
        var framed = line
        framed.writeInteger(UInt8(ascii: "\n"))
        do {
            try await self.publisher.write(framed, maximumSegmentBytes: self.configuration.maximumSegmentBytes)
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
        try await self.write(line: ByteBuffer(bytes: data))
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
            try await Task.sleep(for: tick)
            await self.publisher.finishSegment(ifOpenFor: self.configuration.segmentWindow)
        }
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
