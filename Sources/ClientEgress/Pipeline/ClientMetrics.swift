#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TrickleProtocol
public import TrickleRelaySupport

/// The client daemon's `GET /metrics` (Prometheus text): what it read, relayed, spooled, sent and streamed.
public struct ClientMetrics: Sendable {
    public let daemon: ClientDaemon
    public let spooledSink: SpooledSink?
    public let reporter: MetricsReporter?
    public let kafka: KafkaSink?
    public let stream: TelemetryStream?
    /// The egress sink's kind (``EgressSinkSpecification/kind``), shown as `sink_info{sink=…} 1`.
    public let sinkKind: String?

    public init(
        daemon: ClientDaemon,
        spooledSink: SpooledSink?,
        reporter: MetricsReporter?,
        kafka: KafkaSink? = nil,
        stream: TelemetryStream?,
        sinkKind: String? = nil
    ) {
        self.sinkKind = sinkKind
        self.daemon = daemon
        self.spooledSink = spooledSink
        self.reporter = reporter
        self.kafka = kafka
        self.stream = stream
    }

    /// `GET /v1/egress`: the sink's kind and its failure states while they hold, in words (the live page shows
    /// them as "metrics API answering 401 since 14:02"): `{"sink":…,"failures":[{"name","reason","since_unix_ms","failures"}]}`.
    public func egressStatus() -> String {
        struct Failure: Encodable {
            let name: String
            let reason: String
            let since_unix_ms: Int64
            let failures: Int
        }
        struct Status: Encodable {
            let sink: String?
            let failures: [Failure]
        }
        let current = [self.reporter?.failure, self.kafka?.failure, self.spooledSink?.spool.appendFailure].compactMap { $0 }
        let status = Status(
            sink: self.sinkKind,
            failures: current.map { Failure(name: $0.name, reason: $0.reason, since_unix_ms: $0.sinceUnixMilliseconds, failures: $0.failures) }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(status)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"failures":[]}"#
    }

    /// The exposition now, as the client's own Prometheus text.
    public func render() -> String { self.snapshot().text }

    /// The counters now (for ``MetricsBridge`` or ``render()``).
    public func snapshot() -> PrometheusText {
        var text = PrometheusText(prefix: "trickle_relay_client_")
        // Added up across subscriptions: no label per session (bounded cardinality); per-subscription detail
        // is in GET /v1/subscriptions.
        let counters = self.daemon.stats
        let subscriber = self.daemon.subscriberStats
        let states = self.daemon.subscriptionStates
        if let sinkKind = self.sinkKind { text.add("sink_info", .gauge, "The egress sink's kind.", 1, labels: ["sink": sinkKind]) }
        for state in ["waiting", "following", "finished", "stopped", "failed"] {
            text.add("subscriptions", .gauge, "Subscriptions by state.", states[state] ?? 0, labels: ["state": state])
        }
        text.add("lines_total", .counter, "Lines read from the events channel.", counters.lines)
        text.add("telemetry_total", .counter, "Telemetry envelopes handed to the egress sink.", counters.telemetry)
        text.add("malformed_lines_total", .counter, "Lines that were not valid JSON, skipped.", counters.malformed)
        text.add("non_object_lines_total", .counter, "Valid JSON lines that were not objects, skipped.", counters.nonObject)
        text.add("telemetry_without_object_event_total", .counter, "Telemetry lines without an object event, skipped.", counters.telemetryWithoutObjectEvent)
        text.add("oversize_total", .counter, "Lines or segments over the cap, skipped.", counters.oversize)
        text.add("sink_failures_total", .counter, "Batches the egress sink failed to take.", counters.sinkFailures)
        text.add("sink_failed_events_total", .counter, "Telemetry events in batches the egress sink failed to take.", counters.sinkFailedEvents)
        text.add("segments_lost_total", .counter, "Segments no longer retained by the server when they were due.", counters.segmentsLost)
        text.add("segments_read_total", .counter, "Segments read from the events channel.", subscriber.segments)
        text.add("subscriber_retries_total", .counter, "Channel reads retried after network errors or 5xx.", subscriber.retries)
        if let spool = self.spooledSink {
            let stats = spool.spool.stats
            text.add("spool_appended_total", .counter, "Envelopes written to the spool.", stats.appended)
            text.add("spool_overflowed_total", .counter, "Envelopes refused because the spool was full.", stats.overflowed)
            text.add("spool_write_failed_total", .counter, "Envelopes refused because writing them to the spool failed (disk full, quota, I/O error).", stats.writeFailed)
            text.add("spool_torn_lines_total", .counter, "Torn last lines cut off after a crash.", stats.tornLines)
            text.add("spool_corrupt_lines_total", .counter, "Spool lines that could not be read back.", stats.corruptLines)
            text.add("spool_bytes", .gauge, "Bytes held in the spool.", stats.bytes)
            text.add("spool_segments", .gauge, "Segment files held in the spool.", stats.segments)
            text.add("spool_unsettled", .gauge, "Envelopes handed to the sink and not yet accepted.", spool.unsettledRecords)
            text.add("spool_delivery_failures_total", .counter, "Deliveries from the spool the sink threw on (retried).", spool.deliveryFailures)
        }
        if let reporter = self.reporter {
            let stats = reporter.stats
            text.add("metrics_sent_total", .counter, "Events the metrics endpoint accepted.", stats.sent)
            text.add("metrics_batches_total", .counter, "Requests the metrics endpoint accepted.", stats.batches)
            text.add("metrics_retries_total", .counter, "Requests repeated after errors, 429 or 413.", stats.retries)
            text.add("metrics_rejected_total", .counter, "Events dropped because the endpoint answered 400.", stats.rejected)
            text.add("metrics_too_large_total", .counter, "Single events dropped as too large (413).", stats.tooLarge)
            text.add("metrics_overflowed_total", .counter, "Events the reporter could not hold.", stats.overflowed)
            text.add("metrics_unsendable_total", .counter, "Envelopes without an id or object data.", stats.unsendable)
            text.add("metrics_unauthorized_total", .counter, "401 answers.", stats.unauthorized)
            text.add("metrics_buffered", .gauge, "Events waiting to be sent.", stats.buffered)
        }
        if let kafka = self.kafka {
            let stats = kafka.stats
            text.add("kafka_produced_total", .counter, "Messages handed to librdkafka (retries included).", stats.produced)
            text.add("kafka_acknowledged_total", .counter, "Messages the brokers acknowledged.", stats.acknowledged)
            text.add("kafka_retried_total", .counter, "Messages produced again after a failed delivery.", stats.retried)
            text.add("kafka_queue_full_total", .counter, "Times librdkafka's local queue was full (back-pressure).", stats.queueFull)
            text.add("kafka_in_flight", .gauge, "Messages exported and not yet acknowledged.", stats.inFlight)
            for (name, count) in stats.errors.sorted(by: { $0.key < $1.key }) {
                text.add("kafka_errors_total", .counter, "Failed deliveries by librdkafka error.", count, labels: ["error": name])
            }
        }
        if let stream = self.stream {
            text.add("stream_events_total", .counter, "Envelopes published on the SSE stream.", stream.publishedCount)
        }
        return text
    }
}
