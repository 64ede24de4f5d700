public import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// Watches one trickle server that stopped answering, so that the subscribers reading from it ask again the
/// moment it is back instead of at the end of their back-off.
///
/// A subscriber whose GET failed before any answer (connection refused, reset, timed out) waits for its back-off
/// *or* this watch, whichever comes first. While anyone waits, one TCP connect to the server is tried every
/// ``probeInterval``: the first that succeeds wakes every waiter. One watch per server serves all its
/// subscribers (the daemon shares them): an outage costs one connect attempt per interval, not one per channel.
///
/// Why it matters: a server restarted after an outage comes back empty, and the runner re-sends what it held
/// at once — several segments in a burst. The server keeps a ring of five; a reader that came back several
/// seconds later (a back-off of up to 5 s) could find the first re-sent segment evicted already.
public final class ServerReturnWatch: Sendable {
    /// The server.
    public let origin: HTTPOrigin
    /// Between two connect attempts while someone waits. Default 0.5 s.
    public let probeInterval: Duration
    private let connectTimeout: Duration
    private let returned = GenerationSignal()

    private struct State {
        var waiters = 0
        var isProbing = false
        var returns = 0
        /// How many were woken by the last return (their asks are spread over a moment).
        var lastWoken = 0
    }

    private let state = RelayMutex(State())

    /// A watch of `origin`'s server.
    public init(origin: HTTPOrigin, probeInterval: Duration = .milliseconds(500), connectTimeout: Duration = .seconds(1)) {
        self.origin = origin
        self.probeInterval = probeInterval
        self.connectTimeout = connectTimeout
    }

    /// Times the server was seen back while someone waited.
    public var returns: Int { self.state.withLock { $0.returns } }

    /// Waits up to `timeout` for the server to accept a connection again (probing it while anyone waits).
    ///
    /// - Returns: How long the caller should wait before asking, when the server came back — a moment spread
    ///   over the waiters woken together (thousands of channels must not connect in the same millisecond, a
    ///   listen backlog overflows) — or `nil` after `timeout` or cancellation.
    public func waitForReturn(upTo timeout: Duration, on group: any EventLoopGroup) async -> Duration? {
        let seen = self.returned.generation
        let startsProbe = self.state.withLock { state in
            state.waiters += 1
            defer { state.isProbing = true }
            return !state.isProbing
        }
        if startsProbe {
            Task { await self.probe(on: group) }
        }
        let changed = await self.returned.wait(past: seen, timeout: TimeAmount(max(timeout, .zero)), on: group.any())
        let woken = self.state.withLock { state in
            state.waiters -= 1
            return state.lastWoken
        }
        guard changed, !Task.isCancelled else { return nil }
        // About 100 µs apart on average: 10,000 channels ask over one second.
        let spread = Duration.microseconds(100) * min(woken, 100_000)
        return spread > .zero ? spread * Double.random(in: 0..<1) : .zero
    }

    /// Tries to connect every ``probeInterval`` while anyone waits; the first success wakes them all.
    private func probe(on group: any EventLoopGroup) async {
        while true {
            _ = await EventLoopSleep.sleep(for: TimeAmount(self.probeInterval), on: group.any())
            let stillWaited = self.state.withLock { state in
                if state.waiters == 0 { state.isProbing = false }
                return state.waiters > 0
            }
            guard stillWaited else { return }
            guard await self.connects(on: group) else { continue }
            self.state.withLock { state in
                state.returns += 1
                state.lastWoken = state.waiters
                state.isProbing = false
            }
            self.returned.advance()
            return
        }
    }

    /// Whether a TCP connection to the server can be made now (closed at once; nothing is sent).
    private func connects(on group: any EventLoopGroup) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(self.connectTimeout))
                .connect(host: self.origin.host, port: self.origin.port)
                .get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
