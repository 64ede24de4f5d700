import ArgumentParser
import AsyncHTTPClient
import Logging
import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// `trickle-relay publish`: writes JSON Lines from standard input onto a trickle channel.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish JSON Lines from standard input onto a trickle channel (a protocol-level debugging tool).",
        discussion: """
            Every input line must be one JSON object. Segments rotate every --segment-window seconds and before \
            a line would push a segment past --max-segment-bytes. Lines that are not strict JSON objects, or \
            larger than the cap, are refused, counted and reported on standard error; the rest go on. At end \
            of input the open segment is sent and the channel is deleted, so readers see end of stream.

            Exit status: 0 every line published; 2 some lines were refused; 64 bad usage; 130 stopped by SIGTERM \
            or SIGINT (what was written is flushed for up to 1.5 s, then the summary is printed).

            Example:
              printf '{"type":"hello"}\\n' | trickle-relay publish --url http://127.0.0.1:2939/events
            """
    )

    @Option(help: "The channel URL: http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var url: String

    @Option(help: "Seconds a segment stays open before it is rotated.")
    var segmentWindow: Double = 10

    @Option(help: "The segment cap in bytes (no segment grows past it).")
    var maxSegmentBytes = 5 * 1024 * 1024

    @Flag(help: "Keep the channel when done instead of deleting it.")
    var keepChannel = false

    @OptionGroup var logging: LoggingOptions

    @OptionGroup(title: "TLS (outbound https://: trust and client certificate)") var tls: TLSOptions

    func validate() throws {
        try validateChannelURL(self.url)
        try SecondsFlag.check(self.segmentWindow, "--segment-window")
        guard self.maxSegmentBytes > 1 else { throw ValidationError("--max-segment-bytes must be > 1, got \(self.maxSegmentBytes)") }
    }

    func run() async throws {
        let logger = self.logging.makeLogger(label: "trickle-relay.publish")
        let url = try TrickleChannelURL(self.url)
        var publisherConfiguration = TricklePublisher.Configuration(mimeType: "application/jsonl")
        publisherConfiguration.deletesChannelOnClose = !self.keepChannel
        let configuration = JSONLWriter.Configuration(
            segmentWindow: SecondsFlag.duration(self.segmentWindow),
            maximumSegmentBytes: self.maxSegmentBytes,
            publisher: publisherConfiguration
        )
        let counts = RelayMutex((written: 0, refused: 0))
        let maxSegmentBytes = self.maxSegmentBytes
        let interrupted = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: try self.tls.configuration())) { client in
            let writer = JSONLWriter(url: url, httpClient: client, configuration: configuration, logger: logger)
            let ended = RelayMutex<JSONLWriterError?>(nil)
            let interrupted = try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await writer.run() }
                // SIGTERM/SIGINT stop reading input; what was written is still flushed (within a deadline).
                let interrupted = try await runInterruptibly(logger: logger) {
                    do {
                        try await withStandardInput { input in
                            try await Self.feed(input, to: writer, maximumLineBytes: maxSegmentBytes, counts: counts)
                        }
                    } catch let error as JSONLWriterError where error.code == .publishFailed || error.code == .closed {
                        // The server ended the channel (closed, gone): stop reading, still report what went out.
                        ended.withLock { $0 = error }
                    }
                }
                if interrupted || ended.withLock({ $0 }) != nil {
                    await untilFirst({ try? await writer.close() }, { try? await Task.sleep(for: .milliseconds(1500)) })
                    group.cancelAll()
                } else {
                    try await writer.close()
                }
                try await group.waitForAll()
                return interrupted
            }
            let stats = writer.publisher.stats
            let total = counts.withLock { $0 }
            let endedBy = ended.withLock { $0 }
            StandardError.write(
                "published \(total.written) lines in \(stats.segments) segments (\(stats.bytes) bytes); refused \(total.refused); failed segments \(stats.failedSegments)\(interrupted ? "; interrupted by a signal" : "")\(endedBy.map { "; stopped: \($0)" } ?? "")"
            )
            if endedBy != nil && !interrupted { throw ExitCode(1) }
            return interrupted
        }
        if interrupted { throw ExitCode(interruptedExitStatus) }
        let refused = counts.withLock { $0.refused }
        if refused > 0 { throw ExitCode(2) }
    }

    /// Frames standard input into lines and writes them; refusals are counted and reported, not fatal.
    static func feed(
        _ input: some AsyncSequence<ByteBuffer, any Error>,
        to writer: JSONLWriter,
        maximumLineBytes: Int,
        counts: borrowing RelayMutex<(written: Int, refused: Int)>
    ) async throws {
        try await JSONLPump.forEachFrame(in: input, maximumLineBytes: maximumLineBytes) { frame in
            switch frame {
            case .line(let line, let number, _):
                do throws(JSONLWriterError) {
                    try await writer.write(line: line)
                    counts.withLock { $0.written += 1 }
                } catch where error.code == .publishFailed || error.code == .closed {
                    throw error
                } catch {
                    counts.withLock { $0.refused += 1 }
                    StandardError.write("line \(number): refused: \(error)")
                }
            case .oversizeLine(let number, let bytes):
                counts.withLock { $0.refused += 1 }
                StandardError.write("line \(number): refused: \(bytes) bytes exceed the \(maximumLineBytes)-byte cap")
            }
        }
    }
}

/// Fails argument validation with the URL parser's explanation (tokens redacted).
func validateChannelURL(_ url: String) throws {
    do {
        _ = try TrickleChannelURL(url)
    } catch {
        throw ValidationError(error.message)
    }
}

/// Fails argument validation for a session's events URL, naming the expected form (tokens redacted).
func validateEventsURL(_ url: String) throws {
    do {
        _ = try TrickleChannelURL(url)
    } catch {
        throw ValidationError("events URL must be http(s)://HOST[:PORT]/[BASE/]CHANNEL, got \(TrickleChannelURL.redacted(url))")
    }
}
