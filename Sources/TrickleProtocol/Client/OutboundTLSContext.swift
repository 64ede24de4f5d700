public import NIOSSL
import Synchronization
import TrickleRelaySupport

/// A process's outbound TLS as it is now: the `NIOSSLContext` of subscribers' own connections
/// (``SegmentConnection`` for `https` channels; one per process, because creating one loads the trust store:
/// expensive, and blocking disk I/O; ALPN `http/1.1` only) and the `TLSConfiguration` the sinks' HTTP requests
/// carry (the metrics reporter, the OTLP log sink). ``replace(with:)`` swaps both (the client's SIGHUP):
/// connections made afterwards use the new TLS, open ones keep theirs.
public final class OutboundTLSContext: Sendable {
    private let current: RelayMutex<(context: NIOSSLContext, configuration: TLSConfiguration)>

    /// A context for `configuration` (from ``OutboundTLS/configuration(now:)``: trust and client certificate).
    ///
    /// - Throws: NIOSSL's error when the configuration cannot make a context.
    public init(_ configuration: TLSConfiguration) throws {
        self.current = RelayMutex((try Self.context(configuration), configuration))
    }

    /// The context new segment connections use.
    var context: NIOSSLContext { self.current.withLock { $0.context } }

    /// The configuration new HTTP requests carry (`HTTPClientRequest.tlsConfiguration`).
    public var configuration: TLSConfiguration { self.current.withLock { $0.configuration } }

    /// Uses `configuration` for connections made from now on.
    ///
    /// - Throws: NIOSSL's error when the configuration cannot make a context (the current one stays).
    public func replace(with configuration: TLSConfiguration) throws {
        let context = try Self.context(configuration)
        self.current.withLock { $0 = (context, configuration) }
    }

    /// The system's trust store and no client certificate: for a subscriber that was given no TLS of its own.
    /// `nil` if the context cannot be made (the subscriber then reads `https` through the HTTP client).
    public static let system: OutboundTLSContext? = try? OutboundTLSContext(.makeClientConfiguration())

    private static func context(_ configuration: TLSConfiguration) throws -> NIOSSLContext {
        var configuration = configuration
        configuration.applicationProtocols = ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }
}
