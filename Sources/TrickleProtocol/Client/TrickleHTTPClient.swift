public import AsyncHTTPClient
import NIOCore
public import NIOSSL
import TrickleRelaySupport

/// The HTTP client settings trickle clients need.
public enum TrickleHTTPClient {
    /// A client configuration fit for trickle: **no read timeout** (a subscriber's GET legitimately waits at the
    /// live edge for as long as the publisher is quiet, and a publisher's POST streams for a whole segment
    /// window; AsyncHTTPClient's read timeout would cut both, TOOLCHAIN-NOTES), a 5 s connect timeout, and no
    /// redirects, and no silent connection retries. Stalls are detected by the protocol layer instead (``TrickleSubscriber``).
    ///
    /// - Parameters:
    ///   - connectTimeout: How long one connection attempt may take. Default 5 s.
    ///   - connectionsPerHost: Connections kept open to one server at most; every subscriber of an `https`
    ///     channel waiting at a live edge holds one, so a daemon following many such channels of one server needs
    ///     as many. (A plain-`http` channel is read over the subscriber's own connection, ``SegmentConnection``.)
    ///     Default 64.
    ///   - tls: Trust and client certificate for `https` (``OutboundTLS/configuration(now:)``); `nil` is the
    ///     system's trust store and no client certificate.
    ///   - allowsHTTP2: Speak HTTP/2 to `https` servers that offer it (requests multiplexed over a few
    ///     connections). Default `false`: HTTP/1.1, one connection per request in flight (docs/tls.md has the
    ///     measurement behind the default).
    public static func configuration(
        connectTimeout: Duration = .seconds(5),
        connectionsPerHost: Int = 64,
        tls: TLSConfiguration? = nil,
        allowsHTTP2: Bool = false
    ) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        if let tls { configuration.tlsConfiguration = tls }
        configuration.timeout = .init(connect: .nanoseconds(Int64(connectTimeout.components.seconds) * 1_000_000_000 + connectTimeout.components.attoseconds / 1_000_000_000), read: nil)
        configuration.redirectConfiguration = .disallow
        configuration.httpVersion = allowsHTTP2 ? .automatic : .http1Only
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(connectionsPerHost, 1)
        // A refused or failed connection fails its request at once: the publisher and subscriber retry with
        // their own back-off and log the failure state. (AsyncHTTPClient's default keeps retrying the
        // connection silently until the request's deadline — 24 h for a streaming request.)
        configuration.connectionPool.retryConnectionEstablishment = false
        // AsyncHTTPClient traces with the process-global tracer unless told otherwise: the relay's requests must
        // not appear in an embedding application's traces (the relay traces its own work with its own tracer,
        // and sets `traceparent` itself where a request continues an event's trace).
        configuration.tracing.tracer = nil
        return configuration
    }

    /// The request deadline used for streaming requests: far enough that only the protocol decides when a
    /// request ends (AsyncHTTPClient's deadline runs until the response head, i.e. past a whole upload).
    static var streamingDeadline: NIODeadline { .now() + .hours(24) }
}
