public import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
import NIOCore
public import ServiceLifecycle
public import TrickleProtocol
public import TrickleRelaySupport

/// The whole client pipeline, built from one ``Configuration`` value: the egress sink (behind a disk spool
/// when it can fail remotely), the ``ClientDaemon`` and its subscriptions, the local endpoint (SSE stream,
/// `/metrics`, `/healthz`, the control API), run as one service group until the daemon ends or SIGTERM/SIGINT.
/// The command line only turns flags and files into the configuration.
public final class ClientApplication: Sendable {
    /// Configuration of a ``ClientApplication``.
    public struct Configuration: Sendable {
        /// Where telemetry goes.
        public var sink: EgressSinkSpecification
        /// The metrics endpoint's API key, read when needed (a reload re-reads it).
        public var apiKey: @Sendable () -> String?
        /// When a file sink syncs to disk. Default ``FileSink/SyncPolicy/never``.
        public var fileSync: FileSink.SyncPolicy
        /// The Kafka sink's settings (topic, compression, credentials, properties); its brokers come from the
        /// sink specification.
        public var kafka: KafkaSink.Configuration
        /// The disk spool in front of the sink; `nil` sends without one.
        public var spool: Spool.Configuration?
        /// Where the control API's subscriptions are persisted (`subscriptions.jsonl`); usually the spool's
        /// directory. `nil` keeps them in memory only.
        public var stateDirectory: String?
        /// The local endpoint; `nil` turns it off.
        public var endpoint: TelemetryStreamServer.Configuration?
        /// Envelopes the SSE stream keeps for `Last-Event-ID`. Default 10,000.
        public var streamRing: Int
        /// The subscriptions to follow from the start (flags and the configuration file).
        public var subscriptions: [ChannelSubscription]
        /// How channels are read (start positions come from each subscription).
        public var reader: JSONLReader.Configuration
        /// Run until stopped even with no subscription left. Default `false`.
        public var runsUntilStopped: Bool
        /// Where the log sink writes. Default: standard error.
        public var logOutput: @Sendable (String) -> Void
        /// The OTLP log sink's headers and resource.
        public var otlp: OTLPLogOptions
        /// How deliveries are traced (the relay's own tracer, or off).
        public var tracing: DeliveryTracing
        /// How `GET /metrics` is answered: through swift-metrics and the executable's registry, or (`nil`, the
        /// default) as the client's own Prometheus text.
        public var metricsExposition: MetricsExposition? = nil
        /// The outbound TLS of the metrics and OTLP sinks, when it may be replaced while they run (the client's
        /// SIGHUP); `nil`: the HTTP client's own.
        public var tls: OutboundTLSContext? = nil
        /// Records the client's counters through swift-metrics every interval even when nobody scrapes
        /// `/metrics` (an application embedding the pipeline sees them in the backend it bootstrapped). Default
        /// every 10 s into the global factory; `nil` turns it off.
        public var metricsRecording: MetricsRecording? = MetricsRecording()

        public init(
            sink: EgressSinkSpecification,
            apiKey: @escaping @Sendable () -> String? = { nil },
            fileSync: FileSink.SyncPolicy = .never,
            kafka: KafkaSink.Configuration = .init(bootstrapServers: []),
            spool: Spool.Configuration? = nil,
            stateDirectory: String? = nil,
            endpoint: TelemetryStreamServer.Configuration? = nil,
            streamRing: Int = 10_000,
            subscriptions: [ChannelSubscription] = [],
            reader: JSONLReader.Configuration = .init(),
            runsUntilStopped: Bool = false,
            otlp: OTLPLogOptions = .init(),
            tracing: DeliveryTracing = .off,
            logOutput: @escaping @Sendable (String) -> Void = ClientApplication.writeToStandardError
        ) {
            self.otlp = otlp
            self.tracing = tracing
            self.logOutput = logOutput
            self.sink = sink
            self.apiKey = apiKey
            self.fileSync = fileSync
            self.kafka = kafka
            self.spool = spool
            self.stateDirectory = stateDirectory
            self.endpoint = endpoint
            self.streamRing = streamRing
            self.subscriptions = subscriptions
            self.reader = reader
            self.runsUntilStopped = runsUntilStopped
        }
    }

    /// What a run did, for the closing summary.
    public struct Summary: Sendable {
        /// How the last channel to end ended; `nil` when stopped.
        public var end: TrickleSubscriber.EndOfStream?
        /// The dispatchers' counters, added up.
        public var counters: EventDispatcher.Counters
        public var spool: Spool.Stats?
        public var reporter: MetricsReporter.Stats?
        public var kafka: KafkaSink.Stats?
        /// Every subscription still listed, with its counters.
        public var subscriptions: [SubscriptionSnapshot]
        /// Subscriptions followed in the run, and those whose channel ended — all of them, listed or not.
        public var channelsFollowed = 0
        public var channelsEnded = 0
    }

    /// Why the pipeline could not be set up (an unwritable file, a spool in use, a bad subscriptions file).
    public struct SetupError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public let configuration: Configuration
    /// The daemon: add and remove subscriptions through it while running.
    public let daemon: ClientDaemon
    /// The local endpoint, when on.
    public let endpoint: TelemetryStreamServer?
    private let reporter: MetricsReporter?
    private let kafkaSink: KafkaSink?
    private let spooledSink: SpooledSink?
    private let metrics: ClientMetrics
    let logger: Logger

    /// Builds the pipeline: opens the sink and the spool, loads the persisted API subscriptions, adds every
    /// subscription.
    ///
    /// - Parameter localOutput: Receives every non-telemetry line, with its subscription.
    /// - Throws: ``SetupError``.
    public init(
        configuration: Configuration,
        httpClient: HTTPClient,
        logger: Logger,
        localOutput: @escaping @Sendable (ChannelSubscription, EventDispatcher.LocalEvent) async -> Void = { _, _ in }
    ) throws(SetupError) {
        self.configuration = configuration
        self.logger = logger
        let base: any EgressSink
        let spool: Spool?
        do {
            base = try Self.makeSink(configuration, httpClient: httpClient, logger: logger)
            spool = try configuration.spool.map { configuration throws(SpoolError) in try Spool(configuration: configuration, logger: logger) }
        } catch {
            throw SetupError(description: "\(error)")
        }
        self.reporter = base as? MetricsReporter
        self.kafkaSink = base as? KafkaSink
        let spooledSink = spool.map { SpooledSink(spool: $0, downstream: base, tracing: configuration.tracing, logger: logger) }
        self.spooledSink = spooledSink
        let stream = configuration.endpoint.map { _ in TelemetryStream(capacity: configuration.streamRing, firstID: TelemetryStream.idsForThisRun()) }
        let store = configuration.stateDirectory.map(SubscriptionStore.init(directory:))
        let persisted: [ChannelSubscription]
        do {
            persisted = try store?.load() ?? []
        } catch {
            spool?.close()
            throw SetupError(description: "\(error)")
        }
        self.daemon = ClientDaemon(
            configuration: .init(
                reader: configuration.reader,
                runsUntilStopped: configuration.runsUntilStopped || !persisted.isEmpty,
                store: store,
                resumePositions: spool?.resumePositions ?? [:],
                tracing: configuration.tracing
            ),
            httpClient: httpClient,
            sink: spooledSink ?? base,
            stream: stream,
            logger: logger,
            localConsumer: localOutput
        )
        for (position, subscription) in (configuration.subscriptions + persisted).enumerated() {
            do {
                try self.daemon.add(subscription, persists: position < configuration.subscriptions.count)
            } catch {
                // The same channel named twice (a flag and the file): followed once.
                logger.warning("subscription not added", metadata: ["subscription.id": "\(subscription.id)", "error": "\(error)"])
            }
        }
        let metrics = ClientMetrics(
            daemon: self.daemon,
            spooledSink: spooledSink,
            reporter: self.reporter,
            kafka: self.kafkaSink,
            stream: stream,
            sinkKind: configuration.sink.kind
        )
        self.metrics = metrics
        if let endpointConfiguration = configuration.endpoint, let stream {
            self.endpoint = TelemetryStreamServer(
                configuration: endpointConfiguration,
                stream: stream,
                logger: logger,
                daemon: self.daemon,
                egress: { metrics.egressStatus() },
                metrics: { [exposition = configuration.metricsExposition] in MetricsExposition.body(for: metrics.snapshot(), exposition: exposition) }
            )
        } else {
            self.endpoint = nil
        }
    }

    private static func makeSink(_ configuration: Configuration, httpClient: HTTPClient, logger: Logger) throws -> any EgressSink {
        try configuration.sink.makeSink(
            httpClient: httpClient,
            apiKey: configuration.apiKey,
            fileSync: configuration.fileSync,
            kafka: configuration.kafka,
            otlp: configuration.otlp,
            tracing: configuration.tracing,
            logger: logger,
            logOutput: configuration.logOutput,
            tls: configuration.tls
        )
    }

    /// The log sink's default output: standard error's queue, in order with the log's lines. A reader that stops
    /// never blocks delivery (past the queue's bound lines are dropped, and a line says how many), and a closed
    /// standard error (its reader gone) drops the text instead of failing the sink: the log sink is a development
    /// aid, and the spool and the other sinks never depend on it.
    public static let writeToStandardError: @Sendable (String) -> Void = { StandardErrorQueue.shared.write($0) }

    /// Re-reads the metrics API key now (SIGHUP).
    public func reloadKey() { self.reporter?.reloadKey() }

    /// The client's counters and gauges now, added up across subscriptions (what `/metrics` serves).
    public func metricsSnapshot() -> PrometheusText { self.metrics.snapshot() }

    /// The pipeline's long-running parts, in start order (a `ServiceGroup` shuts them down in reverse): the
    /// metrics recorder (last to stop, so its final recording sees the run's last numbers), the endpoint (after
    /// the daemon stopped feeding it), the daemon. The daemon and the endpoint ending shut the group down.
    ///
    /// The process runs these in its one `ServiceGroup`, beside its own services (tracing first, so it is shut
    /// down last) and with the signals it chooses; the library installs no signal handler.
    public var services: [ServiceGroupConfiguration.ServiceConfiguration] {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let recording = self.configuration.metricsRecording {
            let recorder = MetricsRecorder(recording, bridge: self.configuration.metricsExposition?.bridge) { [metrics] in metrics.snapshot() }
            services.append(.init(service: recorder))
        }
        if let endpoint = self.endpoint {
            services.append(.init(service: endpoint, successTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: self.daemon, successTerminationBehavior: .gracefullyShutdownGroup))
        return services
    }

    /// What the run did so far (final once the services ended).
    public var summary: Summary {
        Summary(
            end: self.daemon.endOfStream,
            counters: self.daemon.stats,
            spool: self.spooledSink?.spool.stats,
            reporter: self.reporter?.stats,
            kafka: self.kafkaSink?.stats,
            subscriptions: self.daemon.subscriptions,
            channelsFollowed: self.daemon.counts.followed,
            channelsEnded: self.daemon.counts.ended
        )
    }

    /// Runs ``services`` in a group of their own, without signal handling, until the daemon ends or the calling
    /// task is cancelled — for tests and embedding; a process composes ``services`` into its own group.
    public func run() async throws -> Summary {
        try await ServiceGroup(configuration: .init(services: self.services, logger: self.logger)).run()
        return self.summary
    }
}
