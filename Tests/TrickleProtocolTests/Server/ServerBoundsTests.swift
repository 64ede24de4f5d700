import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #9 item 7: the embedded server's memory is bounded, refusals are clear and counted, and a token guards
/// publishing, deleting and metrics.
@Suite("TrickleServer bounds, token, /healthz and /metrics", .timeLimit(.minutes(1)))
struct ServerBoundsTests {
    @Test("past --max-channels a create or auto-creating POST answers 503 with Retry-After, counted in /metrics")
    func channelLimit() async throws {
        try await withTrickleServer(.init(maximumChannels: 3)) { (server, base, client) async throws in
            for name in ["a", "b"] { #expect(try await client.send(.POST, "\(base)/\(name)").status == 200) }
            #expect(try await client.send(.POST, "\(base)/c/0", body: "x\n").status == 200)
            let refused = try await client.send(.POST, "\(base)/d")
            #expect(refused.status == 503 && refused.header("Retry-After") == "5" && refused.body.contains("maximum of 3 channels"))
            #expect(try await client.send(.POST, "\(base)/e/0", body: "x\n").status == 503)
            #expect(server.channelCount == 3)
            // Deleting one makes room.
            #expect(try await client.send(.DELETE, "\(base)/a").status == 200)
            #expect(try await client.send(.POST, "\(base)/d").status == 200)
            let metrics = try await client.send(.GET, "\(base)/metrics")
            #expect(metrics.body.contains("trickle_server_refused_channel_limit_total 2"))
            #expect(metrics.body.contains("trickle_server_channels 3"))
        }
    }

    @Test("past --max-retained-bytes a segment body answers 503 and ends; bytes are released when segments go")
    func retainedBytesLimit() async throws {
        let limit = 64 * 1024
        try await withTrickleServer(.init(maximumRetainedBytes: limit)) { (server, base, client) async throws in
            let chunk = String(repeating: "x", count: 40 * 1024) + "\n"
            #expect(try await client.send(.POST, "\(base)/a/0", body: chunk).status == 200)
            #expect(server.retainedBytes == chunk.utf8.count)
            let refused = try await client.send(.POST, "\(base)/b/0", body: chunk)
            #expect(refused.status == 503 && refused.header("Retry-After") != nil && refused.body.contains("segment bytes"))
            #expect(server.retainedBytes <= limit)
            // The first channel's segment is freed with the channel (after its grace period: here via sweep).
            #expect(try await client.send(.DELETE, "\(base)/a").status == 200)
            let metrics = try await client.send(.GET, "\(base)/metrics")
            #expect(metrics.body.contains("trickle_server_refused_retained_bytes_limit_total 1"))
        }
        // Without a grace period, a deleted channel's bytes are released at once.
        try await withTrickleServer(.init(deletedChannelGracePeriod: .zero, maximumRetainedBytes: limit)) { (server, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/a/0", body: String(repeating: "y", count: 50_000)).status == 200)
            #expect(try await client.send(.DELETE, "\(base)/a").status == 200)
            try await waitUntil("the deleted channel's bytes to be released") { server.retainedBytes == 0 }
            #expect(try await client.send(.POST, "\(base)/b/0", body: String(repeating: "z", count: 50_000)).status == 200)
        }
    }

    @Test("a token guards POST, DELETE and /metrics (Bearer in any case, or ?token=); GET stays open unless asked")
    func token() async throws {
        try await withTrickleServer(.init(token: BearerToken("s3cret"))) { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x\n").status == 401)
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x\n", headers: ["Authorization": "Bearer wrong"]).status == 401)
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x\n", headers: ["Authorization": "Bearer s3cret"]).status == 200)
            #expect(try await client.send(.POST, "\(base)/ch/1", body: "y\n", headers: ["Authorization": "bearer s3cret"]).status == 200)
            #expect(try await client.send(.POST, "\(base)/ch/2?token=s3cret", body: "z\n").status == 200)
            #expect(try await client.send(.GET, "\(base)/ch/0").body == "x\n")
            #expect(try await client.send(.DELETE, "\(base)/ch").status == 401)
            #expect(try await client.send(.GET, "\(base)/metrics").status == 401)
            #expect(try await client.send(.GET, "\(base)/healthz").body == "ok")
            let metrics = try await client.send(.GET, "\(base)/metrics", headers: ["Authorization": "BEARER s3cret"])
            #expect(metrics.status == 200 && metrics.body.contains("trickle_server_refused_unauthorized_total 4"))
            #expect(try await client.send(.DELETE, "\(base)/ch?jwt=s3cret").status == 200)
        }
        try await withTrickleServer(.init(token: BearerToken("s3cret"), tokenRequiredForReads: true)) { (_, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0?token=s3cret", body: "x\n")
            #expect(try await client.send(.GET, "\(base)/ch/0").status == 401)
            #expect(try await client.send(.GET, "\(base)/ch/next").status == 401)
            #expect(try await client.send(.GET, "\(base)/ch/0?token=s3cret").body == "x\n")
        }
    }

    @Test("an empty segment closed by DELETE of its seq answers 200 with Lp-Trickle-Latest, as go-livepeer does")
    func emptyDeletedSegmentHasLatest() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "zero\n")
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/1") }
                try await waitUntil("the GET to wait on seq 1") { server.activeReaders(ofChannel: "ch") == 1 }
                #expect(try await client.send(.DELETE, "\(base)/ch/1").status == 200)
                let empty = try #require(try await group.next())
                #expect(empty.status == 200 && empty.body.isEmpty)
                #expect(empty.header("Lp-Trickle-Seq") == "1")
                #expect(empty.header("Lp-Trickle-Latest") != nil)
            }
        }
    }
}
