public import NIOSSL
import Synchronization
#if TRICKLE_RELAY_TSAN
import TrickleRelaySupport  // SanitizerVisibleMutex
#endif

/// The TLS of a subscriber's own connections (``SegmentConnection`` for `https` channels): one `NIOSSLContext`
/// shared by every connection of the process (creating one loads the trust store: expensive, and blocking disk
/// I/O), offering ALPN `http/1.1` only. ``replace(with:)`` swaps it (the client's SIGHUP): connections made
/// afterwards use the new one, open ones keep theirs.
public final class SegmentTLS: Sendable {
    private let current: Mutex<NIOSSLContext>

    /// A context for `configuration` (from ``OutboundTLS/configuration(now:)``: trust and client certificate).
    ///
    /// - Throws: NIOSSL's error when the configuration cannot make a context.
    public init(_ configuration: TLSConfiguration) throws {
        self.current = Mutex(try Self.context(configuration))
    }

    /// The context new connections use.
    var context: NIOSSLContext { self.current.withLock { $0 } }

    /// Uses `configuration` for connections made from now on.
    ///
    /// - Throws: NIOSSL's error when the configuration cannot make a context (the current one stays).
    public func replace(with configuration: TLSConfiguration) throws {
        let context = try Self.context(configuration)
        self.current.withLock { $0 = context }
    }

    /// The system's trust store and no client certificate: for a subscriber that was given no TLS of its own.
    /// `nil` if the context cannot be made (the subscriber then reads `https` through the HTTP client).
    public static let system: SegmentTLS? = try? SegmentTLS(.makeClientConfiguration())

    private static func context(_ configuration: TLSConfiguration) throws -> NIOSSLContext {
        var configuration = configuration
        configuration.applicationProtocols = ["http/1.1"]
        return try NIOSSLContext(configuration: configuration)
    }
}
