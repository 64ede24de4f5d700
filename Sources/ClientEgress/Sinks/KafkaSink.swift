import CoreMetrics
import DequeModule
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import NIOCore
import NIOPosix
public import RdKafka
import Synchronization
import Tracing
import TrickleProtocol
import TrickleRelaySupport

/// Publishes every envelope to a Kafka topic through librdkafka: value = the envelope's bytes exactly as
/// relayed, key = its `id`; `acks=all` and the idempotent producer. A record is settled only when the broker
/// acknowledged it (its delivery report), so behind a ``SpooledSink`` a spool segment goes only once every event
/// in it is on the topic. A failed delivery (librdkafka gave up: timed out, a broker error it does not retry) is
/// produced again; a full local queue is back-pressure on the exporter, never a drop.
///
/// ``run()`` polls delivery reports on a thread of its own (librdkafka's poll blocks) until ``shutdown()``, which
/// flushes within ``Configuration/shutdownTimeout`` and reports what is still in flight (it stays in the spool).
///
/// Each record's export → acknowledgement time is a `trickle_relay_client_delivery_seconds` sample (as the HTTP
/// reporter's are); with the relay's tracer each exported batch is a `trickle_relay.kafka.deliver` span, a child of
/// the batch's shared `traceparent` (or linking several), that ends when the brokers acknowledged its last record.
public final class KafkaSink: SettlingEgressSink {
    /// Configuration of a ``KafkaSink``.
    public struct Configuration: Sendable {
        /// `host:port` of the bootstrap brokers (`KAFKA_BOOTSTRAP_SERVERS`).
        public var bootstrapServers: [String]
        /// The topic. Default `scope-events` (`KAFKA_TOPIC`).
        public var topic: String
        /// `compression.type`. Default `lz4`.
        public var compression: String
        /// SASL PLAIN credentials (`KAFKA_SASL_USERNAME`/`KAFKA_SASL_PASSWORD`): with them the producer uses
        /// `SASL_SSL` and `PLAIN`, as Scope does (override with ``properties``).
        public var saslUsername: String?
        public var saslPassword: String?
        /// Any librdkafka properties, applied last (`--kafka-option key=value`).
        public var properties: [(String, String)]
        /// How long ``shutdown()`` waits for deliveries in flight. Default 10 s.
        public var shutdownTimeout: Duration
        /// Records exported and not yet acknowledged, at most. Default 100,000.
        public var maximumUnsettledRecords: Int

        public init(
            bootstrapServers: [String],
            topic: String = "scope-events",
            compression: String = "lz4",
            saslUsername: String? = nil,
            saslPassword: String? = nil,
            properties: [(String, String)] = [],
            shutdownTimeout: Duration = .seconds(10),
            maximumUnsettledRecords: Int = 100_000
        ) {
            self.bootstrapServers = bootstrapServers
            self.topic = topic
            self.compression = compression
            self.saslUsername = saslUsername
            self.saslPassword = saslPassword
            self.properties = properties
            self.shutdownTimeout = shutdownTimeout
            self.maximumUnsettledRecords = maximumUnsettledRecords
        }

        /// The librdkafka properties, in the order they are applied.
        var librdkafkaProperties: [(String, String)] {
            var properties: [(String, String)] = [
                ("bootstrap.servers", self.bootstrapServers.joined(separator: ",")),
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("compression.type", self.compression),
                ("linger.ms", "5"),
                ("client.id", "trickle-relay"),
                ("log_level", "3"),
            ]
            if let username = self.saslUsername, let password = self.saslPassword {
                properties += [
                    ("security.protocol", "SASL_SSL"), ("sasl.mechanism", "PLAIN"), ("sasl.username", username), ("sasl.password", password),
                ]
            }
            return properties + self.properties
        }
    }

    /// What the sink did.
    public struct Stats: Sendable, Hashable {
        /// Messages handed to librdkafka (retries included).
        public var produced = 0
        /// Messages the brokers acknowledged.
        public var acknowledged = 0
        /// Messages produced again after a failed delivery.
        public var retried = 0
        /// Exported and not yet acknowledged.
        public var inFlight = 0
        /// Times the local queue was full (the exporter waited).
        public var queueFull = 0
        /// Failed deliveries by librdkafka error name.
        public var errors: [String: Int] = [:]
    }

    /// A record handed to librdkafka and not yet acknowledged.
    private struct InFlight {
        var record: TelemetryRecord
        var exportedAt: ContinuousClock.Instant
        /// The traced batch it belongs to (its span ends with the batch's last acknowledgement).
        var batch: UInt64?
    }

    /// A traced batch: its span and how many of its records the brokers have yet to acknowledge.
    private struct TracedBatch {
        var span: any Span
        var unacknowledged: Int
    }

    private struct State {
        var nextTag: UInt64 = 1
        /// Records exported and not acknowledged, by tag (a failed one is produced again from here).
        var inFlight: [UInt64: InFlight] = [:]
        var tracedBatches: [UInt64: TracedBatch] = [:]
        var nextBatch: UInt64 = 1
        /// Acknowledged tags above the settled prefix.
        var acknowledgedAhead: Set<UInt64> = []
        /// Every tag up to here is acknowledged.
        var settledThrough: UInt64 = 0
        var retries: Deque<UInt64> = []
        var stats = Stats()
        var handler: (@Sendable (Int) -> Void)?
    }

    /// `trickle_relay_client_delivery_seconds`: export → the brokers acknowledged it, per record (swift-metrics).
    private static let deliveryLatency = CoreMetrics.Timer(label: "trickle_relay_client_delivery_seconds")

    public let configuration: Configuration
    private let tracing: DeliveryTracing
    private let producer: KafkaProducer
    private let logger: Logger
    private let state: RelayMutex<State>
    private let progress = GenerationSignal()
    private let stopped = OneShotSignal<Void>()
    private let pollerEnded = OneShotSignal<Void>()
    private let failures: FailureLog

    /// Deliveries' failure state while it holds (reason in words, since when), for the live page.
    var failure: FailureLog.Current? { self.failures.current }

    /// Creates the producer.
    ///
    /// - Throws: ``KafkaError``: librdkafka is not installed (the message names the package), or a property was
    ///   refused.
    public init(configuration: Configuration, logger: Logger, tracing: DeliveryTracing = .off) throws(KafkaError) {
        self.configuration = configuration
        self.tracing = tracing
        self.logger = logger
        self.failures = FailureLog("Kafka deliveries failing (retried from memory; the spool keeps them until acknowledged)", logger: logger)
        let state = RelayMutex(State())
        self.state = state
        let box = DeliveryTarget()
        self.producer = try KafkaProducer(properties: configuration.librdkafkaProperties, topic: configuration.topic) { tag, error in
            box.sink?.delivered(tag: tag, error: error)
        }
        box.sink = self
        logger.info(
            "Kafka producer ready",
            metadata: [
                "kafka.bootstrap": "\(configuration.bootstrapServers.joined(separator: ","))", "kafka.topic": "\(configuration.topic)",
                "kafka.compression": "\(configuration.compression)", "kafka.sasl": "\(configuration.saslUsername != nil)",
                "kafka.options": "\(configuration.properties.map(\.0).joined(separator: ","))",
            ]
        )
    }

    /// The counters so far.
    public var stats: Stats {
        self.state.withLock { state in
            var stats = state.stats
            stats.inFlight = state.inFlight.count
            return stats
        }
    }

    // MARK: SettlingEgressSink

    public func onSettled(_ handler: @escaping @Sendable (Int) -> Void) {
        self.state.withLock { $0.handler = handler }
    }

    public var maximumUnsettledRecords: Int { self.configuration.maximumUnsettledRecords }

    /// Hands the records to librdkafka (copied); waits while its local queue is full.
    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let batch = self.startTracedBatch(records)
        let exportedAt = ContinuousClock.now
        for record in records {
            let tag = self.state.withLock { state -> UInt64 in
                defer { state.nextTag += 1 }
                state.inFlight[state.nextTag] = InFlight(record: record, exportedAt: exportedAt, batch: batch)
                return state.nextTag
            }
            try await self.produce(record, tag: tag)
        }
    }

    /// The batch's delivery span, when the relay traces (the trace context is read only then).
    private func startTracedBatch(_ records: some Collection<TelemetryRecord>) -> UInt64? {
        guard self.tracing.tracer != nil, !records.isEmpty else { return nil }
        let parents = records.lazy.compactMap { record -> DeliveryTracing.Headers? in
            let fields = EnvelopeFields(including: record.envelope)
            return fields.traceparent.map { DeliveryTracing.Headers(traceparent: $0, tracestate: fields.tracestate) }
        }
        guard
            let (span, _) = self.tracing.startSpan(
                "trickle_relay.kafka.deliver",
                parents: parents,
                attributes: ["trickle_relay.events": records.count]
            )
        else { return nil }
        span.attributes["messaging.destination.name"] = self.configuration.topic
        return self.state.withLock { state in
            defer { state.nextBatch += 1 }
            state.tracedBatches[state.nextBatch] = TracedBatch(span: span, unacknowledged: records.count)
            return state.nextBatch
        }
    }

    /// Waits until every exported record was acknowledged (or the task is cancelled).
    public func forceFlush() async throws {
        while !Task.isCancelled {
            let seen = self.progress.generation
            if self.state.withLock({ $0.inFlight.isEmpty }) || self.stopped.value != nil { return }
            await self.progress.wait(past: seen)
        }
    }

    /// Flushes within the shutdown timeout, stops polling, reports what is still in flight.
    public func shutdown() async {
        guard self.stopped.value == nil else { return }
        let timeout = Int32(clamping: self.configuration.shutdownTimeout.components.seconds * 1000)
        let producer = self.producer
        _ = try? await BlockingIO.run { producer.flush(timeoutMilliseconds: timeout) }
        self.stopped.fulfill(())
        _ = await self.pollerEnded.wait()
        // Batches not acknowledged by now stay in the spool; their spans end saying so.
        let unfinished = self.state.withLock { state in
            defer { state.tracedBatches = [:] }
            return Array(state.tracedBatches.values)
        }
        for batch in unfinished {
            batch.span.setStatus(SpanStatus(code: .error, message: "\(batch.unacknowledged) records not acknowledged before shutdown"))
            batch.span.end()
        }
        let stats = self.stats
        self.logger.info(
            "Kafka producer stopped",
            metadata: [
                "kafka.acknowledged": "\(stats.acknowledged)", "kafka.retried": "\(stats.retried)", "kafka.in_flight": "\(stats.inFlight)",
            ]
        )
    }

    /// Polls delivery reports on a dedicated thread until ``shutdown()``.
    public func run() async throws {
        // A pool of one thread of its own: the poll blocks, so it must not take a thread NIO or Swift Concurrency runs on.
        let poller = NIOThreadPool(numberOfThreads: 1)
        poller.start()
        poller.submit { [self] _ in
            while self.stopped.value == nil {
                self.producer.poll(timeoutMilliseconds: 50)
                self.produceRetries()
            }
            self.producer.poll(timeoutMilliseconds: 0)
            self.pollerEnded.fulfill(())
        }
        _ = await self.pollerEnded.wait()
        try? await poller.shutdownGracefully()
    }

    // MARK: Delivery

    private func produce(_ record: TelemetryRecord, tag: UInt64) async throws {
        var waited = false
        while true {
            let result = Self.produce(record, tag: tag, with: self.producer)
            if result == KafkaErrorCode.noError { break }
            guard result == KafkaErrorCode.queueFull else {
                // A local error (an unknown topic, a message over message.max.bytes): retried from memory.
                self.noteFailure(result)
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !waited {
                waited = true
                self.state.withLock { $0.stats.queueFull += 1 }
            }
            try await Task.sleep(for: .milliseconds(1))  // the poll thread drains the queue
        }
        self.state.withLock { $0.stats.produced += 1 }
    }

    private static func produce(_ record: TelemetryRecord, tag: UInt64, with producer: KafkaProducer) -> Int32 {
        let key = EnvelopeFields.stringBytes("id", of: record.envelope)
        return record.envelope.withUnsafeReadableBytes { value in
            if let key {
                return key.withUnsafeReadableBytes { producer.produce(value: value, key: $0, tag: tag) }
            }
            return producer.produce(value: value, key: nil, tag: tag)
        }
    }

    /// A delivery report (on the poll thread).
    fileprivate func delivered(tag: UInt64, error: Int32) {
        guard error == KafkaErrorCode.noError else {
            self.noteFailure(error)
            self.state.withLock { state in
                state.stats.retried += 1
                state.retries.append(tag)
            }
            return
        }
        if self.failures.isFailing { self.failures.cleared() }
        let acknowledged: (settled: (Int, (@Sendable (Int) -> Void)?)?, exportedAt: ContinuousClock.Instant, finished: (any Span)?)? =
            self.state.withLock { state in
                guard let entry = state.inFlight.removeValue(forKey: tag) else { return nil }
                state.stats.acknowledged += 1
                state.acknowledgedAhead.insert(tag)
                var finished: (any Span)?
                if let batch = entry.batch, var traced = state.tracedBatches[batch] {
                    traced.unacknowledged -= 1
                    if traced.unacknowledged <= 0 {
                        state.tracedBatches[batch] = nil
                        finished = traced.span
                    } else {
                        state.tracedBatches[batch] = traced
                    }
                }
                let before = state.settledThrough
                while state.acknowledgedAhead.remove(state.settledThrough + 1) != nil { state.settledThrough += 1 }
                let settled = state.settledThrough > before ? (Int(state.settledThrough), state.handler) : nil
                return (settled, entry.exportedAt, finished)
            }
        guard let acknowledged else { return }
        let elapsed = ContinuousClock.now - acknowledged.exportedAt
        Self.deliveryLatency.recordNanoseconds(elapsed.components.seconds &* 1_000_000_000 &+ elapsed.components.attoseconds / 1_000_000_000)
        acknowledged.finished?.end()
        if let (count, handler) = acknowledged.settled { handler?(count) }
        self.progress.advance()
    }

    /// Produces the failed deliveries again (on the poll thread; a full queue leaves them for the next round).
    private func produceRetries() {
        while true {
            let next: (UInt64, TelemetryRecord)? = self.state.withLock { state in
                while let tag = state.retries.first {
                    if let entry = state.inFlight[tag] { return (tag, entry.record) }
                    state.retries.removeFirst()
                }
                return nil
            }
            guard let (tag, record) = next else { return }
            let result = Self.produce(record, tag: tag, with: self.producer)
            if result == KafkaErrorCode.queueFull { return }
            self.state.withLock { state in
                _ = state.retries.popFirst()
                if result == KafkaErrorCode.noError { state.stats.produced += 1 } else { state.retries.append(tag) }
            }
            if result != KafkaErrorCode.noError {
                self.noteFailure(result)
                return
            }
        }
    }

    private func noteFailure(_ code: Int32) {
        let name = self.producer.describe(code)
        self.state.withLock { $0.stats.errors[name, default: 0] += 1 }
        self.failures.failed(reason: name, metadata: ["kafka.error_code": "\(code)"])
    }
}

/// Lets the delivery callback, created before the sink finished initialising, reach it.
private final class DeliveryTarget: @unchecked Sendable {
    // @unchecked: set once, in the sink's init, before any message is produced.
    weak var sink: KafkaSink?
}
