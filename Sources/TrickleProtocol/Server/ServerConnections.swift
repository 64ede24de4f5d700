import NIOCore
import Synchronization
import TrickleRelaySupport

/// The open connections of the embedded server, so that shutting down can end each of them.
final class ServerConnections: Sendable {
    private let channels = RelayMutex<[ObjectIdentifier: any Channel]>([:])

    /// Tracks `channel` until it closes.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLock { $0[id] = nil }
        }
    }

    /// Asks every connection to close: idle ones at once, busy ones after their response.
    func shutDown() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(TrickleConnectionHandler.ShutdownEvent())
        }
    }

    /// Waits until every connection has closed or `timeout` has passed (even in a cancelled task).
    func waitUntilClosed(timeout: TimeAmount, on eventLoop: any EventLoop) async {
        let futures = self.channels.withLock { $0.values.map(\.closeFuture) }
        guard !futures.isEmpty else { return }
        let done = eventLoop.makePromise(of: Void.self)
        EventLoopFuture.andAllComplete(futures, on: eventLoop).whenComplete { _ in done.succeed() }
        let deadline = eventLoop.scheduleTask(in: timeout) { done.succeed() }
        try? await done.futureResult.get()
        deadline.cancel()
    }

    /// Closes every connection now.
    func closeAll() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }
}
