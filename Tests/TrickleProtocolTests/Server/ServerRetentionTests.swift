import AsyncHTTPClient
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

@Suite("The embedded server gives back what ended channels held")
struct ServerRetentionTests {
    @Test("10 × create / POST 5 segments / read / DELETE, then quiet: once the grace period ends, no channel, tombstone or segment byte is left")
    func channelLifecycles() async throws {
        let segment = String(repeating: "{\"n\":1}\n", count: 8_192)  // 64 KiB
        let clock = ManualClock()
        try await withTrickleServer(.init(deletedChannelGracePeriod: .seconds(10)), clock: clock) { (server, base, client) async throws in
            for cycle in 0..<10 {
                let channel = "\(base)/cycle-\(cycle)"
                #expect(try await client.send(.POST, channel).status == 200)
                for seq in 0..<5 {
                    #expect(try await client.send(.POST, "\(channel)/\(seq)", body: segment).status == 200)
                }
                // A reader that ended must not keep anything either.
                #expect(try await client.send(.GET, "\(channel)/4").body.utf8.count == segment.utf8.count)
                #expect(try await client.send(.DELETE, channel).status == 200)
            }
            // Right after the deletes the last channels are still readable (that is the grace period) …
            #expect(server.deletedChannelsReadable > 0 && server.retainedBytes > 0)
            #expect(server.channelCount == 0)
            // … still within it (9 s) …
            try await clock.waitForSleepers(2)
            for _ in 0..<9 { try await clock.advance(by: .seconds(1), thenWaitForSleepers: 2) }
            #expect(server.deletedChannelsReadable == 10 && server.retainedBytes > 0)
            // … and with no further request (no delete, no sweep) everything is given back once it ends.
            for _ in 0..<2 { try await clock.advance(by: .seconds(1), thenWaitForSleepers: 2) }
            #expect(server.deletedChannelsReadable == 0 && server.retainedBytes == 0)
        }
    }
}
