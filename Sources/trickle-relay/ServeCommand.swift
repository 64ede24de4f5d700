import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals
import TrickleProtocol
import TrickleRelaySupport

/// `trickle-relay serve`: the embedded trickle server as a standalone process.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a local trickle server (go-livepeer semantics) for runners and clients to meet on.",
        discussion: """
            Channels live in memory. Every channel keeps its 5 most recent segments; a channel whose last \
            segment started more than 5 minutes ago is swept. With --no-autocreate the server behaves like an \
            orchestrator: only channels named with --channel exist, and POSTs to unknown channels get 404.

            Memory is bounded: at most --max-channels live channels and --max-retained-bytes of segment bytes \
            across all of them; past either bound a request is answered 503 with Retry-After and counted. \
            GET /healthz answers "ok"; GET /metrics serves counters and gauges in the Prometheus text format.

            With a token (--token-file FILE, or TRICKLE_RELAY_SERVER_TOKEN) publishing, deleting and /metrics \
            need "Authorization: Bearer <token>" or ?token=<token> in the URL (so a runner or client passes it \
            inside its events URL); --token-for-reads guards segment GETs too. A non-loopback --host without a \
            token is refused: anyone on the network could publish into or delete your channels.

            Exit status: 0 stopped by SIGTERM/SIGINT; 1 could not listen; 64 bad usage.

            Examples:
              trickle-relay serve
              trickle-relay serve --port 8935 --base-path /ai/trickle/ --no-autocreate --channel job-1-events
              trickle-relay serve --host 0.0.0.0 --token-file /run/secrets/trickle-token
            """
    )

    @Option(help: "Address to listen on. Non-loopback addresses expose every channel to the network.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 2939

    @Option(help: "Path prefix of every channel, e.g. /ai/trickle/ like an orchestrator.")
    var basePath = "/"

    @Flag(inversion: .prefixedNo, help: "Create channels on their first POST (off: only --channel names exist).")
    var autocreate = true

    @Option(name: .customLong("channel"), help: "Create this channel at startup (repeatable).")
    var channels: [String] = []

    @Option(help: "Largest segment a publisher may POST, in bytes; larger ones are cut with 413.")
    var maxSegmentBytes = 64 * 1024 * 1024

    @Option(help: "Seconds a channel may go without a new segment before it is swept.")
    var idleTimeout = 300

    @Option(help: "Live channels at most; more are refused with 503.")
    var maxChannels = 10_000

    @Option(help: "Segment bytes held in memory at most, across all channels; more are refused with 503.")
    var maxRetainedBytes = 1024 * 1024 * 1024

    @Option(help: "A file holding the bearer token required to publish, delete and read /metrics (env TRICKLE_RELAY_SERVER_TOKEN).")
    var tokenFile: String?

    @Flag(help: "Require the token for segment GETs and /next too.")
    var tokenForReads = false

    @Flag(
        inversion: .prefixedNo,
        help: "Announce every channel created and removed on the _changes channel (clients waiting for channels follow it instead of asking for each; with --token-file, reading it needs the token)."
    )
    var announceChannels = true

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp(
        "Serve HTTPS with this PEM certificate chain (leaf first); re-read with --tls-key on SIGHUP.",
        valueName: "PEM"
    ))
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("The certificate's unencrypted PEM private key.", valueName: "PEM"))
    var tlsKey: String?

    @Flag(help: "Offer HTTP/2 over TLS as well (ALPN h2, as go-livepeer's server does); needs --tls-cert.")
    var http2 = false

    @Flag(help: "Serve plain HTTP on a non-loopback --host (the token then crosses the network in clear text).")
    var allowPlainHttp = false

    @Option(
        help: "Event-loop threads. 1 (the default) keeps a body chunk on one thread from socket to readers, the cheapest per event under one-chunk-per-line publishers; raise it for many busy channels on a many-core host."
    )
    var threads = 1

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (0...65535).contains(self.port) else { throw ValidationError("--port must be 0…65535, got \(self.port)") }
        guard self.maxSegmentBytes > 0 else { throw ValidationError("--max-segment-bytes must be positive, got \(self.maxSegmentBytes)") }
        guard self.idleTimeout > 0, self.idleTimeout <= 86_400 * 365 else {
            throw ValidationError("--idle-timeout must be 1…31536000 seconds, got \(self.idleTimeout)")
        }
        guard (1...256).contains(self.threads) else { throw ValidationError("--threads must be 1…256, got \(self.threads)") }
        guard self.maxChannels > 0 else { throw ValidationError("--max-channels must be positive, got \(self.maxChannels)") }
        guard self.maxRetainedBytes >= self.maxSegmentBytes || self.maxRetainedBytes >= 1024 * 1024 else {
            throw ValidationError("--max-retained-bytes must be at least 1 MiB (1048576), got \(self.maxRetainedBytes)")
        }
        let token = try self.token()
        if self.tokenForReads && token == nil {
            throw ValidationError("--token-for-reads needs a token: --token-file FILE or TRICKLE_RELAY_SERVER_TOKEN")
        }
        if !ListenAddress.isLoopback(self.host) && token == nil {
            throw ValidationError(
                "--host \(self.host) is not loopback: anyone who can reach it could publish into or delete channels; set a token with --token-file FILE (or TRICKLE_RELAY_SERVER_TOKEN)"
            )
        }
        switch (self.tlsCertificate, self.tlsKey) {
        case (.some, nil): throw ValidationError("--tls-cert needs --tls-key: name the certificate's private key")
        case (nil, .some): throw ValidationError("--tls-key needs --tls-cert: name the certificate the key belongs to")
        case (.some, .some): _ = try self.serverTLS()
        case (nil, nil):
            if self.http2 { throw ValidationError("--http2 is offered over TLS only: add --tls-cert PEM --tls-key PEM") }
            if !ListenAddress.isLoopback(self.host) && !self.allowPlainHttp {
                throw ValidationError(
                    "--host \(self.host) is not loopback: serve HTTPS with --tls-cert PEM --tls-key PEM, or pass --allow-plain-http to send the token in clear text"
                )
            }
        }
        if let bad = self.channels.first(where: { $0.isEmpty || $0.contains("/") }) {
            throw ValidationError("--channel must be one path segment (no '/'), got '\(bad)'")
        }
    }

    /// The TLS certificate pair, loaded and checked; `nil` without `--tls-cert`.
    func serverTLS() throws(ValidationError) -> ServerTLS? {
        guard let certificate = self.tlsCertificate, let key = self.tlsKey else { return nil }
        do {
            return try ServerTLS(certificatePath: certificate, keyPath: key, offersHTTP2: self.http2)
        } catch {
            throw ValidationError("--tls-cert/--tls-key \(error.description)")
        }
    }

    /// The token, from --token-file or the environment (read once; never logged).
    func token() throws(ValidationError) -> String? {
        try Environment.secret(file: self.tokenFile, flag: "--token-file", variables: ["TRICKLE_RELAY_SERVER_TOKEN"])
    }

    func run() async throws {
        // Every waiting reader and open upload holds a socket: thousands of channels need more than 1,024.
        FileDescriptorLimit.raiseToMaximum()
        // The server's request handlers are Swift tasks and its sockets are NIO's: on separate thread pools every
        // body chunk (one per line under the SDK's writer) crosses threads several times, and the context
        // switches cost more than the work. Swift Concurrency's global jobs run on NIO's event loops instead, and
        // with one loop (the default) a chunk stays on one thread from socket to segment to the readers' sockets.
        // Measured (sdkwriter benchmark, server CPU per event at 1,000 / 5,000 / 20,000 lines/s): two thread pools
        // 117 / 101 / 32 µs, shared with 2 loops 100 / 81 / 29 µs, one loop 77 / 70 / 25 µs.
        NIOSingletons.groupLoopCountSuggestion = self.threads
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = self.logging.makeLogger(label: "trickle-relay.serve")
        var configuration = TrickleServer.Configuration(
                host: self.host,
                port: self.port,
                basePath: self.basePath,
                autocreate: self.autocreate,
                maximumSegmentBytes: self.maxSegmentBytes,
                idleChannelTimeout: .seconds(self.idleTimeout),
                maximumChannels: self.maxChannels,
                maximumRetainedBytes: self.maxRetainedBytes,
                token: try self.token().map(BearerToken.init),
                tokenRequiredForReads: self.tokenForReads
            )
        let tls = try self.serverTLS()
        configuration.tls = tls
        configuration.announcesChannels = self.announceChannels
        configuration.metricsExposition = ProcessMetrics.bootstrap()
        let server = TrickleServer(configuration: configuration, logger: logger)
        for channel in self.channels { server.createChannel(named: channel) }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server), .init(service: ReadyAnnouncer(server: server, logger: logger))]
                    + (tls.map { [.init(service: Self.certificateReload($0, logger: logger))] } ?? []),
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    /// SIGHUP re-reads the certificate pair: new connections use the new one; a pair that fails its checks is
    /// refused with a warning and the running one stays.
    static func certificateReload(_ tls: ServerTLS, logger: Logger) -> SignalTrap {
        SignalTrap(.sighup, name: "SIGHUP certificate reload") {
            do {
                try tls.reload()
                logger.notice("TLS certificate reloaded", metadata: ["tls.certificate": "\(tls.certificatePath ?? "")"])
            } catch {
                logger.warning("TLS certificate reload refused; the running certificate stays", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Logs the address once the server listens (the port matters when 0 was asked for).
struct ReadyAnnouncer: Service {
    let server: TrickleServer
    let logger: Logger

    func run() async throws {
        let port = try await self.server.waitUntilListening()
        let base = self.server.configuration.basePath
        self.logger.notice(
            "trickle server listening",
            metadata: [
                "trickle.url": "\(self.server.configuration.tls == nil ? "http" : "https")://\(self.server.configuration.host):\(port)\(base.hasPrefix("/") ? base : "/" + base)"
            ]
        )
        try? await gracefulShutdown()
    }
}

extension ReadyAnnouncer: CustomStringConvertible {
    var description: String { "ReadyAnnouncer" }
}
