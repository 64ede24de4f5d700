import ArgumentParser
import AsyncHTTPClient
import Logging
import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// `trickle-relay subscribe`: prints the JSON Lines of a trickle channel as they arrive.
struct SubscribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Print a trickle channel's JSON Lines to standard output as they arrive (a protocol-level debugging tool).",
        discussion: """
            Valid JSON object lines go to standard output byte for byte; malformed, non-object, oversize lines \
            and segments are reported on standard error (with seq and line number) and skipped. Runs until the \
            channel ends (Lp-Trickle-Closed or 404), then prints a summary on standard error.

            Start positions: latest (replay the most recent segment, then follow; the SDK's default), next \
            (only new segments), or a seq number.

            Exit status: 0 the channel ended; 64 bad usage; 130 stopped by SIGTERM or SIGINT (summary printed).

            Example:
              trickle-relay subscribe --url http://127.0.0.1:2939/events --start next
            """
    )

    @Option(help: "The channel URL: http(s)://HOST[:PORT]/[BASE/]CHANNEL.")
    var url: String

    @Option(help: "Where to start: latest, next, or a seq number ≥ 0.")
    var start = "latest"

    @Option(help: "The per-segment cap in bytes; larger segments are cut and reported.")
    var maxSegmentBytes = 5 * 1024 * 1024

    @Option(help: "Seconds a 404 after data, without a clean close, is taken for a restarting server (0: end at once).")
    var reconnectGrace: Double = 30

    @OptionGroup var logging: LoggingOptions

    @OptionGroup(title: "TLS (outbound https://: trust and client certificate)") var tls: TLSOptions

    func validate() throws {
        try validateChannelURL(self.url)
        try SecondsFlag.check(self.reconnectGrace, "--reconnect-grace", allowsZero: true)
        guard (1...(1 << 30)).contains(self.maxSegmentBytes) else {
            throw ValidationError("--max-segment-bytes must be 1…1073741824 (1 GiB), got \(self.maxSegmentBytes)")
        }
        guard self.startPosition != nil else {
            throw ValidationError("--start must be latest, next or a seq number ≥ 0, got \(self.start)")
        }
    }

    var startPosition: TrickleSubscriber.StartPosition? { Self.startPosition(self.start) }

    /// Parses `latest`, `next` or a seq number ≥ 0.
    static func startPosition(_ text: String) -> TrickleSubscriber.StartPosition? {
        switch text {
        case "latest": return .latest
        case "next": return .next
        default: return TrickleSeq.parseHeader(text).map { .seq($0) }
        }
    }

    func run() async throws {
        let logger = self.logging.makeLogger(label: "trickle-relay.subscribe")
        let url = try TrickleChannelURL(self.url)
        let counts = RelayMutex((lines: 0, diagnostics: 0, gaps: 0))
        let tls = try self.tls.configuration()
        var subscriber = TrickleSubscriber.Configuration(start: self.startPosition ?? .latest, reconnectGrace: SecondsFlag.duration(self.reconnectGrace))
        subscriber.tls = try TLSOptions.outboundTLS(tls)
        let configuration = JSONLReader.Configuration(maximumSegmentBytes: self.maxSegmentBytes, subscriber: subscriber)
        let end = RelayMutex<TrickleSubscriber.EndOfStream?>(nil)
        let outputClosed = RelayMutex(false)
        let interrupted = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(tls: tls)) { client in
            let reader = JSONLReader(url: url, httpClient: client, configuration: configuration, logger: logger)
            // SIGTERM/SIGINT end the subscription at once; the summary still goes out.
            return try await runInterruptibly(logger: logger) {
                let result: TrickleSubscriber.EndOfStream
                do {
                    result = try await reader.run { item in
                        switch item {
                        case .line(let line):
                            var out = line.bytes
                            out.writeInteger(UInt8(ascii: "\n"))
                            guard StandardOutput.write(out) else { throw StandardOutputClosed() }
                            counts.withLock { $0.lines += 1 }
                        case .diagnostic(let diagnostic):
                            StandardError.write("skipped: \(diagnostic)")
                            counts.withLock { $0.diagnostics += 1 }
                        case .gap(let from, let to):
                            StandardError.write("lost segments \(from)..<\(to) (no longer retained by the server)")
                            counts.withLock { $0.gaps += to - from }
                        }
                    }
                } catch is StandardOutputClosed {
                    // `subscribe … | head -n 1`: the reader has what it wanted; end quietly, as Unix tools do.
                    outputClosed.withLock { $0 = true }
                    return
                }
                end.withLock { $0 = result }
            }
        }
        let total = counts.withLock { $0 }
        if outputClosed.withLock({ $0 }) {
            StandardError.write("standard output closed (its reader went away): \(total.lines) lines printed, \(total.diagnostics) skipped, \(total.gaps) segments lost")
            return
        }
        StandardError.write(
            "\(Self.describe(end.withLock { $0 }, interrupted: interrupted)): \(total.lines) lines, \(total.diagnostics) skipped, \(total.gaps) segments lost"
        )
        if interrupted { throw ExitCode(interruptedExitStatus) }
    }

    static func describe(_ end: TrickleSubscriber.EndOfStream?, interrupted: Bool) -> String {
        switch end {
        case .closed: return "end of stream (channel closed)"
        case .notFound: return "end of stream (channel not found)"
        case nil: return interrupted ? "interrupted by a signal" : "ended"
        }
    }
}
