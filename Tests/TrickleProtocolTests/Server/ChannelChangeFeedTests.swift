import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Foundation
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// The embedded server announces channels on `_changes` (issue #27: waiting for channels costs one long-poll per
/// server, not an ask per channel).
@Suite("The server's channel announcements (_changes)", .timeLimit(.minutes(1)))
struct ChannelChangeFeedTests {
    /// Reads `_changes` segments from `seq` until `enough` says the lines so far suffice.
    static func readFeed(_ base: String, _ client: HTTPClient, from seq: Int, until enough: ([String]) -> Bool) async throws -> [String] {
        var lines: [String] = []
        var seq = seq
        while !enough(lines) {
            let segment = try await client.send(.GET, "\(base)/_changes/\(seq)")
            #expect(segment.status == 200, "\(segment)")
            lines += segment.body.split(separator: "\n").map(String.init)
            seq += 1
        }
        return lines
    }

    @Test("creating and deleting channels is announced as added / removed lines; the feed is not a channel")
    func announcesCreateAndDelete() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            #expect(try await client.send(.GET, "\(base)/_changes/next").status == 200)
            for name in ["a", "b", "c"] { #expect(try await client.send(.POST, "\(base)/\(name)").status == 200) }
            let added = try await Self.readFeed(base, client, from: 0) { $0.contains { $0.contains("\"c\"") } }
            #expect(added.flatMap { Self.names(in: $0, key: "added") } == ["a", "b", "c"], "\(added)")
            let next = try #require(Int(try await client.send(.GET, "\(base)/_changes/next").body.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(try await client.send(.DELETE, "\(base)/b").status == 200)
            let removed = try await Self.readFeed(base, client, from: next) { $0.contains { $0.contains("removed") } }
            #expect(removed == [#"{"removed":["b"]}"#])
            // The feed is not one of the channels: not counted, not deletable, no announcement of itself.
            #expect(server.channelCount == 2)
            #expect(try await client.send(.DELETE, "\(base)/_changes").status == 400)
            #expect(try await client.send(.GET, "\(base)/_changes/next").status == 200)
        }
    }

    @Test("channels created together are announced together: 100 in a few segments, every name once, in order")
    func coalesces() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let names = (0..<100).map { "session-\($0)" }
            for name in names { server.createChannel(named: name) }
            var segments = 0
            let lines = try await Self.readFeed(base, client, from: 0) { lines in
                segments += 1
                return lines.flatMap { Self.names(in: $0, key: "added") }.count >= 100
            }
            #expect(lines.flatMap { Self.names(in: $0, key: "added") } == names)
            #expect(segments - 1 < 10, "\(segments - 1) segments for 100 channels")
        }
    }

    @Test("names are JSON-escaped; a channel swept for idleness is announced as removed")
    func escapesAndSweeps() async throws {
        let clock = ManualClock()
        try await withTrickleServer(.init(idleSweepInterval: .seconds(60), idleChannelTimeout: .seconds(60)), clock: clock) { (server, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/we%22ird%5C").status == 200)
            let added = try await Self.readFeed(base, client, from: 0) { !$0.isEmpty }
            #expect(try JSONValue.parse(Array(added[0].utf8)).objectValue?["added"] == .array([.string(#"we%22ird%5C"#)]))
            try await clock.waitForSleepers(2)
            try await clock.advance(by: .seconds(60), thenWaitForSleepers: 2)
            #expect(server.channelCount == 0)
            let removed = try await Self.readFeed(base, client, from: 1) { !$0.isEmpty }
            #expect(removed == [#"{"removed":["we%22ird%5C"]}"#])
        }
    }

    @Test("with a token, reading the feed needs it even where segment reads are open (channel names may be capabilities)")
    func feedNeedsTheToken() async throws {
        try await withTrickleServer(.init(token: BearerToken("s3cret"))) { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/open?token=s3cret").status == 200)
            #expect(try await client.send(.GET, "\(base)/open/next").status == 200)
            #expect(try await client.send(.GET, "\(base)/_changes/next").status == 401)
            #expect(try await client.send(.GET, "\(base)/_changes/0").status == 401)
            #expect(try await client.send(.GET, "\(base)/_changes/next?token=s3cret").status == 200)
            let segment = try await client.send(.GET, "\(base)/_changes/0?jwt=s3cret")
            #expect(segment.status == 200 && segment.body == #"{"added":["open"]}"# + "\n")
        }
    }

    @Test("a server configured without announcements has no _changes")
    func turnedOff() async throws {
        var configuration = TrickleServer.Configuration()
        configuration.announcesChannels = false
        try await withTrickleServer(configuration) { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/a").status == 200)
            #expect(try await client.send(.GET, "\(base)/_changes/next").status == 404)
        }
    }

    static func names(in line: String, key: String) -> [String] {
        guard case .array(let values)? = (try? JSONValue.parse(Array(line.utf8)))?.objectValue?[key] else { return [] }
        return values.compactMap(\.stringValue)
    }
}
