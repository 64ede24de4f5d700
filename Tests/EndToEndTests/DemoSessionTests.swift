import Foundation
import Testing
import RelayDemo

@Suite("The demo's built-in session")
struct DemoSessionTests {
    @Test("is exactly fixtures/clean-session.jsonl")
    func matchesFixture() throws {
        let fixture = try String(contentsOf: fixturesDirectory().appendingPathComponent("clean-session.jsonl"), encoding: .utf8)
        #expect(DemoSession.jsonl + "\n" == fixture)
    }
}
