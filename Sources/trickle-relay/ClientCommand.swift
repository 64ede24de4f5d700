import ArgumentParser
import RelayTracing
import AsyncHTTPClient
import ClientEgress
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TrickleProtocol
import TrickleRelaySupport
import ServiceLifecycle
import UnixSignals

/// `trickle-relay client`: the daemon on the user's machine. It turns flags and the configuration file into a
/// ``ClientApplication/Configuration`` and runs it; the pipeline itself lives in ClientEgress.
struct ClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Follow sessions' events channels and republish their telemetry to one egress sink.",
        discussion: """
            Every {"type":"telemetry","event":<envelope>} line's envelope goes, byte for byte, to the sink; every \
            other event prints to standard output as JSONL (unless --quiet). Bad lines are counted, logged with \
            seq and line number, and skipped. The client rides out server restarts (retries with back-off).

            Channels: one daemon follows any number of them, named three ways, usable together: repeated \
            --events-url flags; the "subscriptions" of a --config file; and the control API on the local \
            endpoint (POST /v1/subscriptions {"events_url","session_id"?,"start"?} → 201 with its id; GET \
            /v1/subscriptions?limit=&after= lists them, a page at a time, with state and counters; DELETE \
            /v1/subscriptions/ID stops one). \
            Subscriptions added through the API are journaled in subscriptions.jsonl in the spool directory, so a \
            restarted daemon (even after kill -9) follows them again, each from its own read position. A \
            channel that ends (closed, or 404 after data) finishes its subscription. With only --events-url \
            flags the client ends, with a summary on standard error, when its last channel ends (with \
            --wait-for-channel a channel that does not exist yet is waited for first); with --config, API \
            subscriptions or --keep-running it runs until stopped. SIGTERM or SIGINT stop it at once: what \
            reached the spool stays there for the next start. SIGHUP re-reads the API key and the --config file \
            (added and removed subscriptions take effect; a broken file is refused and the running \
            configuration kept; sink, spool and listen changes need a restart).

            Sinks: log (one TELEMETRY line per envelope, on standard error), file:PATH (append the envelopes as \
            JSONL), http(s)://… (the HTTP metrics reporter: batches to that endpoint with a bearer key from \
            --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY), null (count only). Without \
            --sink: the metrics reporter when TRICKLE_RELAY_METRICS_URL (or DAYDREAM_METRICS_URL) and a key are \
            set, else Kafka when KAFKA_BOOTSTRAP_SERVERS is, else the log sink (SCOPE_TELEMETRY_LOG_SINK=1 forces the \
            log sink). kafka:HOST:PORT[,HOST:PORT…] publishes each envelope to --kafka-topic (KAFKA_TOPIC, default \
            scope-events), key = its id, value = its bytes, acks=all, idempotent; it needs librdkafka at run time \
            (Debian: apt-get install librdkafka1). otlp:https://HOST[:PORT][/PATH] exports each envelope as an \
            OTLP/HTTP (JSON) log record to an OpenTelemetry receiver (no path: /v1/logs; http:// only to \
            127.0.0.1): body = the envelope, attributes data.type, session_id, connection_id, event.id and the \
            trace context; headers from TRICKLE_RELAY_OTLP_LOGS_HEADERS (key=value,…). All channels feed the one sink.

            Spool: the remote sinks (metrics, Kafka, OTLP) write through one disk spool for all channels (--spool-dir, default \
            $XDG_STATE_HOME/trickle-relay/spool/<channel> for a single --events-url, else …/spool/daemon; \
            ~/.local/state when XDG_STATE_HOME is unset). Its records remember their channel. An envelope \
            counts as taken once it is in the spool; spool files are deleted only after the endpoint accepted \
            everything in them, so a crash or kill -9 loses nothing that reached the spool. A restart resumes \
            each channel just after its last spooled line (if the server still retains it; segments it no \
            longer has are reported as lost) and delivers what is left. Delivery is at-least-once: a duplicate \
            carries the same id.

            Local endpoint (--listen, default 127.0.0.1:7071; "off" disables it): GET /telemetry/stream is a \
            Server-Sent Events stream of every relayed envelope (id, event: telemetry, data) and of the \
            channels' other events (event: their type, data: the line), filtered with ?session=ID and \
            ?type=NAME, resumable with Last-Event-ID from the last --stream-ring events, with a keep-alive \
            comment every 15 s; GET /healthz; GET /metrics (Prometheus text, added up across channels); the \
            control API above. With a token (--stream-token-file or TRICKLE_RELAY_STREAM_TOKEN) every route but \
            /healthz needs "Authorization: Bearer <token>" or ?jwt=<token>; a non-loopback --listen requires a \
            token.

            Start positions: latest (replay the most recent segment, then follow), next, or a seq number. A \
            spool's read position for the channel, when there is one, takes precedence.

            Exit codes: 0 when the channels ended or the client was stopped; 64 for bad flags or a bad --config \
            file (the message names the field); 2 when the sink or the spool cannot be set up (unwritable file \
            or directory, spool in use by another client); 3 when every channel was never seen (404 before any \
            data: a mistyped URL?); 1 when the client fails while running (e.g. an explicit --listen address is \
            taken).

            Examples:
              trickle-relay client --events-url http://127.0.0.1:2939/sess-1-events --sink file:telemetry.jsonl
              trickle-relay client --config /etc/trickle-relay/client.json
              curl -X POST http://127.0.0.1:7071/v1/subscriptions -d '{"events_url":"http://127.0.0.1:2939/sess-2-events"}'
              curl -N 'http://127.0.0.1:7071/telemetry/stream?session=sess-2'
            """
    )

    @Option(name: .customLong("events-url"), help: "An events channel to follow: http(s)://HOST[:PORT]/[BASE/]CHANNEL. Repeat for more.")
    var eventsURLs: [String] = []

    @Option(name: .customLong("config"), help: "A JSON configuration file (sink, spool, listen, token files, subscriptions); re-read on SIGHUP. Flags win over it.")
    var configFile: String?

    @Flag(help: "Run until stopped, even when no channel is left (add channels through the control API).")
    var keepRunning = false

    @OptionGroup(title: "Tracing (the relay's own spans over OTLP/HTTP; env TRICKLE_RELAY_OTLP_TRACES_ENDPOINT…)")
    var tracingOptions: TracingOptions

    @Option(help: "Where telemetry goes: log, file:PATH, http(s)://… (metrics reporter), kafka:HOST:PORT[,…], otlp:https://… (OTLP/HTTP logs), or null. Default: from the environment.")
    var sink: String?

    @Option(help: "File holding the metrics API key (re-read on SIGHUP and every second while a 401 pauses sending).")
    var apiKeyFile: String?

    @Option(help: "Where --events-url channels start: latest, next, or a seq number ≥ 0.", transform: ClientCommand.parseStart)
    var start: TrickleSubscriber.StartPosition = .latest

    @Flag(help: "Do not print non-telemetry events on standard output.")
    var quiet = false

    @Option(help: "Seconds to wait for a channel that does not exist yet (a client started before the runner's first segment). 0 treats that 404 as the end at once. (default: 0)")
    var waitForChannel: Double?

    @Option(help: "Seconds a 404 after data, without a clean close, is taken for a restarting trickle server: the client keeps asking (and resumes where it was) until the channel is back or this passes. 0 ends at that 404. (default: 30)")
    var reconnectGrace: Double?

    @Option(help: "Spool directory (default: $XDG_STATE_HOME/trickle-relay/spool/<host>_<port>_<path>, or …/spool/daemon for several channels).")
    var spoolDir: String?

    @Flag(help: "Send without the disk spool (events buffered in memory are lost to a crash).")
    var noSpool = false

    @Option(help: "Most bytes the spool holds; past it new events are refused and counted. (default: 1073741824)")
    var spoolMaxBytes: Int?

    @Flag(help: "fsync the spool after every append (survives power loss, not only process crashes).")
    var spoolFsync = false

    @Option(help: "When the file sink syncs to disk: never (leave it to the OS; a process crash loses nothing written) or batch (fsync after every batch; survives power loss).")
    var fileSync: FileSyncFlag = .never

    @Option(help: "Local endpoint for /telemetry/stream, /healthz, /metrics and /v1/subscriptions: HOST:PORT, or off. (default: 127.0.0.1:7071; if that port is taken, the client runs without the endpoint and says so)")
    var listen: String?

    @Option(help: "File holding the token the local endpoint requires (env: TRICKLE_RELAY_STREAM_TOKEN).")
    var streamTokenFile: String?

    @Option(help: "Events the SSE stream keeps for Last-Event-ID resumption.")
    var streamRing = 10_000

    @Option(help: "Event-loop threads. 1 (the default) keeps a channel's chunks on one thread from socket to sink, the cheapest per event; raise it on a many-core host following many busy channels.")
    var threads = 1

    @Flag(help: "Read https channels over HTTP/2 where the server offers it: the channels of one server share a few multiplexed connections through the HTTP client instead of one connection each. Costs more CPU per event (docs/tls.md); for servers that limit connections.")
    var http2 = false

    @Option(help: "Kafka topic (env KAFKA_TOPIC). (default: scope-events)")
    var kafkaTopic: String?

    @Option(help: "Kafka compression.type: none, gzip, snappy, lz4 or zstd. (default: lz4)")
    var kafkaCompression: String?

    @Option(help: "A librdkafka property for the Kafka sink, KEY=VALUE (repeatable; e.g. ssl.ca.location=/etc/ssl/ca.pem). SASL PLAIN over SASL_SSL is set up from KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD.")
    var kafkaOption: [String] = []

    @OptionGroup var logging: LoggingOptions

    @OptionGroup(title: "TLS (outbound https://: trust and client certificate)") var tls: TLSOptions

    /// `--file-sync`.
    enum FileSyncFlag: String, ExpressibleByArgument, CaseIterable {
        case never, batch

        var policy: FileSink.SyncPolicy { self == .batch ? .everyBatch : .never }
    }

    static func parseStart(_ text: String) throws -> TrickleSubscriber.StartPosition {
        guard let start = TrickleSubscriber.StartPosition(parsing: text) else {
            throw ValidationError("--start must be latest, next or a seq number ≥ 0, got \(text)")
        }
        return start
    }

    // MARK: Flags and file, merged

    /// The flags and the configuration file, merged (flags win) and checked.
    struct Settings {
        var file: ClientConfigurationFile?
        var sink: EgressSinkSpecification
        var apiKeyFile: String?
        var subscriptions: [ChannelSubscription]
        var listen: String?
        var listenAddress: ListenAddress?
        var streamTokenFile: String?
        var streamToken: String?
        var spoolDirectory: String
        var usesSpool: Bool
        var spoolMaximumBytes: Int
        var waitForChannel: Double
        var reconnectGrace: Double
        var kafka: KafkaSink.Configuration
        var otlp: OTLPLogOptions
        /// Trust and client certificate for outbound HTTPS, checked; `nil` is the system's store.
        var tls: TLSConfiguration?
    }

    func validate() throws {
        guard (1...256).contains(self.threads) else { throw ValidationError("--threads must be 1…256, got \(self.threads)") }
        _ = try self.settings()
        _ = try self.tracingOptions.configuration(role: "client")
    }

    /// Reads the configuration file (if any) and merges the flags over it; every problem is a usage error.
    func settings() throws -> Settings {
        let file: ClientConfigurationFile?
        do {
            file = try self.configFile.map { path throws(ClientConfigurationFileError) in try ClientConfigurationFile(path: path) }
        } catch {
            throw ValidationError(error.description)
        }
        var subscriptions: [ChannelSubscription] = []
        for url in self.eventsURLs {
            try validateEventsURL(url)
            let subscription = try ChannelSubscription(eventsURL: TrickleChannelURL(url), start: self.start, origin: .flag)
            guard !subscriptions.contains(where: { $0.id == subscription.id }) else {
                throw ValidationError("--events-url \(TrickleChannelURL.redacted(url)) is given twice")
            }
            subscriptions.append(subscription)
        }
        subscriptions += (file?.subscriptions ?? []).filter { configured in !subscriptions.contains { $0.id == configured.id } }

        let apiKeyFile = self.apiKeyFile ?? file?.apiKeyFile
        let apiKey = try Environment.secret(file: apiKeyFile, flag: "--api-key-file", variables: Self.apiKeyVariables)
        let sink: EgressSinkSpecification
        if let text = self.sink {
            do { sink = try EgressSinkSpecification(parsing: text) } catch { throw ValidationError("--\(error.description)") }
        } else if let configured = file?.sink {
            sink = configured
        } else {
            sink = .fromEnvironment(ProcessInfo.processInfo.environment, hasAPIKey: apiKey != nil)
        }
        if case .metrics = sink, apiKey == nil {
            throw ValidationError("the metrics sink needs an API key: --api-key-file, TRICKLE_RELAY_METRICS_API_KEY or SCOPE_CLOUD_API_KEY")
        }
        let spoolMaximumBytes = self.spoolMaxBytes ?? file?.spoolMaximumBytes ?? (1 << 30)
        guard spoolMaximumBytes >= 1 << 20 else { throw ValidationError("--spool-max-bytes must be at least 1 MiB (1048576)") }
        guard self.streamRing >= 1 else { throw ValidationError("--stream-ring must be at least 1") }
        let waitForChannel = self.waitForChannel ?? file?.waitForChannel ?? 0
        let reconnectGrace = self.reconnectGrace ?? file?.reconnectGrace ?? 30
        try SecondsFlag.check(waitForChannel, "--wait-for-channel", allowsZero: true)
        try SecondsFlag.check(reconnectGrace, "--reconnect-grace", allowsZero: true)

        var kafka = KafkaSink.Configuration(bootstrapServers: [])
        kafka.topic = self.kafkaTopic ?? file?.kafkaTopic ?? Environment.value("KAFKA_TOPIC") ?? kafka.topic
        kafka.compression = self.kafkaCompression ?? file?.kafkaCompression ?? kafka.compression
        guard ["none", "gzip", "snappy", "lz4", "zstd"].contains(kafka.compression) else {
            throw ValidationError("--kafka-compression must be none, gzip, snappy, lz4 or zstd, got \(kafka.compression)")
        }
        kafka.saslUsername = Environment.value("KAFKA_SASL_USERNAME")
        kafka.saslPassword = Environment.value("KAFKA_SASL_PASSWORD")
        kafka.properties = file?.kafkaOptions ?? []
        for option in self.kafkaOption {
            guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                throw ValidationError("--kafka-option must be KEY=VALUE (a librdkafka property), got \(option.prefix(60))")
            }
            kafka.properties.append((String(option[..<equals]), String(option[option.index(after: equals)...])))
        }
        // Flags, then the file's fields, then the environment; the files are checked here (exit 64).
        let fileTLS = file?.tls ?? OutboundTLS()
        let tlsSettings = self.tls.settings(file: fileTLS)
        let tls = try self.tls.configuration(file: fileTLS)
        // The Kafka sink gets the same files as librdkafka properties, unless they were set for it explicitly.
        for (property, value) in [
            ("ssl.ca.location", tlsSettings.caFile), ("ssl.certificate.location", tlsSettings.clientCertificateFile),
            ("ssl.key.location", tlsSettings.clientKeyFile),
        ] {
            if let value, !kafka.properties.contains(where: { $0.0 == property }) { kafka.properties.append((property, value)) }
        }
        let listen = self.listen ?? file?.listen
        let streamTokenFile = self.streamTokenFile ?? file?.streamTokenFile
        let listenAddress = try Self.listenAddress(listen)
        // A token that was asked for is never dropped: an unusable file is refused here, whatever the address.
        let streamToken = try Environment.secret(file: streamTokenFile, flag: "--stream-token-file", variables: ["TRICKLE_RELAY_STREAM_TOKEN"])
        if let listenAddress, !listenAddress.isLoopback, streamToken == nil {
            throw ValidationError("--listen \(listen ?? "") is not loopback: set a token with --stream-token-file or TRICKLE_RELAY_STREAM_TOKEN")
        }
        let spoolDirectory =
            self.spoolDir ?? file?.spoolDirectory
            ?? Self.defaultSpoolDirectory(single: self.configFile == nil && subscriptions.count == 1 ? subscriptions.first?.eventsURL : nil)
        let usesSpool = !self.noSpool && (file?.spool ?? true) && (sink.canFailRemotely || self.spoolDir != nil || file?.spoolDirectory != nil)
        return Settings(
            file: file,
            sink: sink,
            apiKeyFile: apiKeyFile,
            subscriptions: subscriptions,
            listen: listen,
            listenAddress: listenAddress,
            streamTokenFile: streamTokenFile,
            streamToken: streamToken,
            spoolDirectory: spoolDirectory,
            usesSpool: usesSpool,
            spoolMaximumBytes: spoolMaximumBytes,
            waitForChannel: waitForChannel,
            reconnectGrace: reconnectGrace,
            kafka: kafka,
            otlp: try Self.otlpOptions(),
            tls: tls
        )
    }

    /// SIGHUP: reads the TLS files again (flags, the configuration file's fields, the environment) and has new
    /// connections of the subscribers and of the metrics and OTLP sinks use them (Kafka's keep what librdkafka read
    /// at start). Files that fail their checks are refused with a warning; the running TLS stays.
    func reloadTLS(_ outboundTLS: OutboundTLSContext, logger: Logger) {
        let file = self.configFile.flatMap { try? ClientConfigurationFile(path: $0) }
        let fileTLS = file?.tls ?? OutboundTLS()
        do {
            try outboundTLS.replace(with: try self.tls.configuration(file: fileTLS) ?? .makeClientConfiguration())
            logger.info("reload: TLS files re-read; new connections of the subscribers and the HTTP sinks use them")
        } catch {
            logger.warning("reload: TLS files refused; the running TLS stays", metadata: ["error": "\(error)"])
        }
    }

    /// The OTLP log sink's headers, from `TRICKLE_RELAY_OTLP_LOGS_HEADERS` (`key=value,…`, percent-encoded
    /// values, as OpenTelemetry's `OTEL_EXPORTER_OTLP_HEADERS`).
    static func otlpOptions() throws -> OTLPLogOptions {
        var options = OTLPLogOptions()
        if let text = Environment.value("TRICKLE_RELAY_OTLP_LOGS_HEADERS") {
            do { options.headers = try OTLPEndpoint.headers(parsing: text, what: "TRICKLE_RELAY_OTLP_LOGS_HEADERS") } catch { throw ValidationError(error.description) }
        }
        return options
    }

    /// The API key, read now: the file if given, else the environment.
    static func apiKey(file: String?) -> String? {
        Environment.currentSecret(file: file, variables: Self.apiKeyVariables)
    }

    static let apiKeyVariables = ["TRICKLE_RELAY_METRICS_API_KEY", "SCOPE_CLOUD_API_KEY"]

    /// `--listen` as host and port, or `nil` for `off`.
    static func listenAddress(_ listen: String?) throws -> ListenAddress? {
        let listen = listen ?? "127.0.0.1:7071"
        guard listen != "off" else { return nil }
        // A bare ":PORT" means loopback.
        guard let address = ListenAddress(listen.hasPrefix(":") ? "127.0.0.1" + listen : listen) else {
            throw ValidationError("--listen must be HOST:PORT (e.g. 127.0.0.1:7071) or off, got \(listen)")
        }
        return address
    }

    /// The default spool directory: one per channel for a one-channel client, else one for the daemon.
    static func defaultSpoolDirectory(single url: TrickleChannelURL?) -> String {
        let state = Environment.value("XDG_STATE_HOME") ?? ((Environment.value("HOME") ?? "/tmp") + "/.local/state")
        guard let url else { return state + "/trickle-relay/spool/daemon" }
        let withoutScheme = url.base.split(separator: "://", maxSplits: 1).last.map(String.init) ?? url.base
        let key = withoutScheme.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
        return state + "/trickle-relay/spool/" + String(key)
    }

    // MARK: Running

    func run() async throws {
        let settings = try self.settings()
        // One socket per followed channel: a fleet needs more than the usual 1,024.
        FileDescriptorLimit.raiseToMaximum()
        // As in `serve`: Swift Concurrency's jobs run on NIO's event loops, so a chunk read from a socket is parsed
        // and dispatched on the same thread instead of hopping to the cooperative pool and back.
        NIOSingletons.groupLoopCountSuggestion = self.threads
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = self.logging.makeLogger(label: "trickle-relay.client")
        let runsUntilStopped = self.keepRunning || self.configFile != nil
        guard !settings.subscriptions.isEmpty || runsUntilStopped || Self.hasPersistedSubscriptions(settings.spoolDirectory) else {
            throw ValidationError("name a channel: --events-url URL (repeatable), or --config FILE; or --keep-running to add channels through the control API")
        }
        let tracing = try self.tracingOptions.makeTracing(role: "client", tls: self.tls, file: settings.file?.tls ?? OutboundTLS(), logger: logger)
        // Before any part of the pipeline creates its metric objects.
        let exposition = ProcessMetrics.bootstrap()
        let sink = settings.sink
        // The key file may change on a reload: the reporter reads whichever is current.
        let apiKeyFile = CurrentKeyFile(settings.apiKeyFile)
        let quiet = self.quiet
        let stdoutGone = Atomic(false)
        // Local lines go through a bounded queue written from its own thread: a reader that stops reading (a
        // paused terminal, `| less`) costs dropped lines, counted, never a stalled dispatch path.
        let printer = QueuedStreamWriter(.standardOutput, logger: logger)
        var subscriber = TrickleSubscriber.Configuration(
            channelWaitTimeout: settings.waitForChannel > 0 ? SecondsFlag.duration(settings.waitForChannel) : nil,
            reconnectGrace: SecondsFlag.duration(settings.reconnectGrace)
        )
        let outboundTLS = try TLSOptions.outboundTLS(settings.tls)
        subscriber.tls = outboundTLS
        // HTTP/2 multiplexes through the HTTP client; the own connections speak HTTP/1.1.
        subscriber.usesOwnConnection = !self.http2
        var configuration = ClientApplication.Configuration(
            sink: sink,
            apiKey: { Self.apiKey(file: apiKeyFile.path) },
            fileSync: self.fileSync.policy,
            kafka: settings.kafka,
            spool: settings.usesSpool
                ? Spool.Configuration(directory: settings.spoolDirectory, maximumBytes: settings.spoolMaximumBytes, syncsEveryAppend: self.spoolFsync)
                : nil,
            stateDirectory: settings.spoolDirectory,
            endpoint: settings.listenAddress.map {
                .init(host: $0.host, port: $0.port, token: settings.streamToken.map(BearerToken.init), isOptional: settings.listen == nil)
            },
            streamRing: self.streamRing,
            subscriptions: settings.subscriptions,
            reader: .init(
                subscriber: subscriber
            ),
            runsUntilStopped: runsUntilStopped,
            otlp: settings.otlp,
            tracing: DeliveryTracing(tracer: tracing?.tracer)
        )
        configuration.metricsExposition = exposition
        configuration.tls = outboundTLS
        let settled = configuration
        let reload = ClientReload(
            configurationFile: self.configFile,
            running: settings.file,
            flaggedSubscriptions: Set(settings.subscriptions.filter { $0.origin == .flag }.map(\.id)),
            overriddenFields: Set(
                [("sink", self.sink), ("spool_dir", self.spoolDir), ("listen", self.listen), ("api_key_file", self.apiKeyFile)]
                    .compactMap { $0.1 == nil ? nil : $0.0 }
            )
        )
        let summary = try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration(connectionsPerHost: 4096, tls: settings.tls, allowsHTTP2: self.http2)) { client in
            let application: ClientApplication
            do {
                application = try ClientApplication(configuration: settled, httpClient: client, logger: logger) { _, event in
                    guard !quiet else { return }
                    var line = event.line
                    line.writeInteger(UInt8(ascii: "\n"))
                    if printer.write(Array(line.readableBytesView)) == .closed,
                        stdoutGone.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
                    {
                        // Its reader went away (EPIPE): delivery to the sink does not depend on stdout, so go on.
                        logger.warning("standard output closed: non-telemetry events are no longer printed; delivery to the sink goes on")
                    }
                }
            } catch {
                StandardError.write("trickle-relay client: \(error)")
                throw ExitCode(2)
            }
            // The process's one service group: tracing first (shut down last, after the pipeline's last spans),
            // the pipeline, and the executable's own two small services (SIGHUP, the endpoint's URL on stderr).
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let tracing { services.append(.init(service: tracing.service)) }
            services += application.services
            services.append(
                .init(
                    service: SignalTrap(.sighup, name: "SIGHUP reload") {
                        logger.info("SIGHUP: reloading the API key and the configuration file")
                        application.reload(reload) { apiKeyFile.path = $0 }
                        self.reloadTLS(outboundTLS, logger: logger)
                    },
                    successTerminationBehavior: .ignore
                )
            )
            if let endpoint = application.endpoint {
                services.append(
                    .init(
                        service: OneShotService(name: "SSE URL") {
                            guard let port = try? await endpoint.waitUntilListening(), port >= 0 else { return }
                            StandardError.write("SSE stream: http://\(endpoint.configuration.host):\(port)/telemetry/stream")
                        },
                        successTerminationBehavior: .ignore
                    )
                )
            }
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            do {
                try await group.run()
            } catch {
                StandardError.write("trickle-relay client: \(error)")
                throw ExitCode(1)
            }
            return application.summary
        }
        printer.drain(timeout: .seconds(2))
        let printed = printer.statistics
        if printed.dropped > 0 || printed.closedOut > 0 {
            StandardError.write(
                "standard output: \(printed.written) lines printed, \(printed.dropped) dropped (its reader fell behind), \(printed.closedOut) not printed (its reader went away)"
            )
        }
        StandardError.write(summary.text(sink: sink))
        for url in summary.neverSeenChannels {
            // 404 before any data: most likely a mistyped events URL, not a session that ended.
            StandardError.write(
                "trickle-relay client: the channel \(url) was never seen (404 before any data): check the events URL, or wait for it with --wait-for-channel SECONDS"
            )
        }
        if summary.everyChannelNeverSeen { throw ExitCode(Self.channelNeverSeenExitStatus) }
    }

    static func hasPersistedSubscriptions(_ directory: String) -> Bool {
        ((try? SubscriptionStore(directory: directory).load()) ?? []).isEmpty == false
    }

    /// Exit status when every channel answered 404 before any data (docs/configuration.md, "Exit codes").
    static let channelNeverSeenExitStatus: Int32 = 3
}

/// The API key file in use: a reload of the configuration file may name another.
final class CurrentKeyFile: Sendable {
    private let current: RelayMutex<String?>

    init(_ path: String?) { self.current = RelayMutex(path) }

    var path: String? {
        get { self.current.withLock { $0 } }
        set { self.current.withLock { $0 = newValue } }
    }
}
