public import NIOSSL

/// The TLS of a subscriber's own connections (``SegmentConnection`` for `https` channels): one `NIOSSLContext`
/// shared by every connection of the process (creating one loads the trust store: expensive, and blocking disk
/// I/O), offering ALPN `http/1.1` only.
public final class SegmentTLS: Sendable {
    let context: NIOSSLContext

    /// A context for `configuration` (from ``OutboundTLS/configuration(now:)``: trust and client certificate).
    ///
    /// - Throws: NIOSSL's error when the configuration cannot make a context.
    public init(_ configuration: TLSConfiguration) throws {
        var configuration = configuration
        configuration.applicationProtocols = ["http/1.1"]
        self.context = try NIOSSLContext(configuration: configuration)
    }

    /// The system's trust store and no client certificate: for a subscriber that was given no TLS of its own.
    /// `nil` if the context cannot be made (the subscriber then reads `https` through the HTTP client).
    public static let system: SegmentTLS? = try? SegmentTLS(.makeClientConfiguration())
}
