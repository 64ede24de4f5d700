import Testing
import RunnerRelay

/// The sink's conservation law (issue #22): every event it received in exactly one terminal counter — or, when
/// `allowPending`, still on its way (written into an upload a bounded close gave up on, which the runner reports
/// as "may be lost").
func expectEveryEventAccountedFor(
    _ stats: TrickleEventsSink.Stats,
    allowPending: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(stats.telemetryUnaccounted == 0 && stats.controlUnaccounted == 0, "\(stats)", sourceLocation: sourceLocation)
    if !allowPending {
        #expect(stats.telemetryPending == 0 && stats.controlPending == 0, "\(stats)", sourceLocation: sourceLocation)
    }
}
