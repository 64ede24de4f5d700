import AsyncHTTPClient
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// The heartbeat on a manual clock (issue #24): `relay_ready` at once, then one `relay_heartbeat` per interval —
/// tested by advancing the clock, with no sleeping and no polling.
@Suite("RelaySelfTelemetry on a manual clock", .timeLimit(.minutes(1)))
struct RelaySelfTelemetryTests {
    @Test("relay_ready first, then exactly one heartbeat per interval, none before it")
    func heartbeatPerInterval() async throws {
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            // The relay is never run: the events stay in its sink's queue, where the test counts them.
            let relay = SessionRelay(
                configuration: .init(
                    eventsURL: try TrickleChannelURL("http://127.0.0.1:9/unused-events"),
                    sink: .init(identity: SessionIdentity(sessionID: "clock"), isTelemetryEnabled: true)
                ),
                httpClient: client,
                logger: quietLogger
            )
            let clock = ManualClock()
            let telemetry = RelaySelfTelemetry(relay: relay, heartbeatInterval: .seconds(30), processStart: .now, clock: clock)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await telemetry.run() }
                try await clock.waitForSleepers(1)
                #expect(relay.sink.stats.received == 1, "relay_ready only")
                clock.advance(by: .seconds(29))
                #expect(clock.sleepers == 1 && relay.sink.stats.received == 1, "no heartbeat before the interval")
                for beat in 1...3 {
                    clock.advance(by: .seconds(beat == 1 ? 1 : 30))
                    // The loop emits, then sleeps again: once it sleeps, its heartbeat is in the queue.
                    try await clock.waitForSleepers(1)
                    #expect(relay.sink.stats.received == 1 + beat)
                }
                group.cancelAll()
                try await group.waitForAll()
            }
            #expect(relay.sink.stats.queuedEvents == 4)
        }
    }
}
