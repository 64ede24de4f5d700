public import Hummingbird
public import NIOCore

/// A Hummingbird request context that keeps the request's channel: a streaming route (the SSE stream) closes it
/// when its reader stopped reading, which is the only way to abort a write that waits for the peer.
public struct ChannelRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came on.
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
