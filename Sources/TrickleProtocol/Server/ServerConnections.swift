import NIOCore
import Synchronization

/// The open connections of the embedded server, so that shutting down can end each of them.
final class ServerConnections: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// Tracks `channel` until it closes.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLock { $0[id] = nil }
        }
    }

    var count: Int { self.channels.withLock { $0.count } }

    /// Asks every connection to close: idle ones at once, busy ones after their response.
    func shutDown() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(TrickleConnectionHandler.ShutdownEvent())
        }
    }

    /// Closes every connection now.
    func closeAll() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }
}
