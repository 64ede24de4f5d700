import Testing
import TrickleProtocol
@testable import ClientEgress

/// The client's closing line counts every channel of the run, not the list (which keeps the last 1,000 that are
/// not running).
@Suite("The client's closing summary")
struct ClientSummaryTests {
    @Test("2,000 channels followed, 1,500 ended, none listed any more: the line says 1500 of 2000")
    func countsEveryChannel() {
        let summary = ClientApplication.Summary(
            end: .closed,
            counters: EventDispatcher.Counters(),
            spool: nil,
            reporter: nil,
            kafka: nil,
            subscriptions: [],
            channelsFollowed: 2_000,
            channelsEnded: 1_500
        )
        #expect(summary.text(sink: .null).contains("client ended (1500 of 2000 channels ended)"), "\(summary.text(sink: .null))")
    }
}
