#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
public import ServiceLifecycle
import TrickleProtocol
import TrickleRelaySupport

/// The agent's telemetry about itself, relayed like any event: `relay_ready` (with `startup_ms`) when the
/// session starts, then a `relay_heartbeat` carrying the sink's counters every interval (default 30 s).
public struct RelaySelfTelemetry: Service, CustomStringConvertible {
    public let relay: SessionRelay
    public let heartbeatInterval: Duration
    /// When the agent process started, for `startup_ms`.
    public let processStart: ContinuousClock.Instant
    private let clock: RelayClock

    /// - Parameter clock: What the heartbeat interval is measured on (tests pass a manual clock).
    public init(
        relay: SessionRelay,
        heartbeatInterval: Duration = .seconds(30),
        processStart: ContinuousClock.Instant,
        clock: some Clock<Duration> = ContinuousClock()
    ) {
        self.relay = relay
        self.heartbeatInterval = heartbeatInterval
        self.processStart = processStart
        self.clock = RelayClock(clock)
    }

    public var description: String { "RelaySelfTelemetry" }

    public func run() async throws {
        let startup = ContinuousClock.now - self.processStart
        let startupMillis = startup.components.seconds * 1000 + startup.components.attoseconds / 1_000_000_000_000_000
        self.relay.sink.emit(#"{"type":"relay_ready","startup_ms":\#(startupMillis),"relay":"trickle-relay"}"#)
        await cancelWhenGracefulShutdown {
            while true {
                do {
                    try await self.clock.sleep(for: self.heartbeatInterval)
                } catch {
                    return
                }
                self.relay.sink.emit(Self.heartbeat(self.relay.sink.stats))
            }
        }
    }

    static func heartbeat(_ stats: TrickleEventsSink.Stats) -> String {
        #"{"type":"relay_heartbeat","emitted":\#(stats.emitted),"relayed":\#(stats.relayed),"dropped":\#(stats.dropped),"refused":\#(stats.refused),"invalid":\#(stats.invalid),"disabled":\#(stats.disabled),"queued":\#(stats.queuedEvents),"bytes_written":\#(stats.bytesWritten),"writer_errors":\#(stats.writerErrors)}"#
    }
}
