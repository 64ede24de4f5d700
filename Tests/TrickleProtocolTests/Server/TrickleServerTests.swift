import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

@Suite("TrickleServer", .timeLimit(.minutes(1)))
struct TrickleServerTests {
    static let chunkedHead = "POST /ch/0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

    /// One chunk of a chunked body.
    static func chunk(_ text: String) -> String { String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n" }

    /// Starts a POST of `ch` seq 0 with `part` as its first chunk and vanishes (the segment's writer broke), then
    /// waits until the server has it.
    static func interruptSegment(with part: String, server: TrickleServer, base: String) async throws {
        let port = Int(base.split(separator: ":").last!)!
        try await RawConnection.sendAndClose(port: port, bytes: Self.chunkedHead + Self.chunk(part))
        try await waitUntil("the first part to arrive") { server.nextWrite(ofChannel: "ch") == 1 }
    }

    @Test("seq -3 and below answer 400 (both reference servers crash here); a non-integer seq answers 400")
    func badSeqs() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            #expect(try await client.send(.GET, "\(base)/ch/-3").status == 400)
            #expect(try await client.send(.GET, "\(base)/ch/-100").status == 400)
            #expect(try await client.send(.POST, "\(base)/ch/-3", body: "x").status == 400)
            #expect(try await client.send(.GET, "\(base)/ch/abc").status == 400)
            #expect(try await client.send(.GET, "\(base)/nochannel/0").status == 404)
        }
    }

    @Test("seqs the server cannot represent answer 400 with a reason on every method; the server lives on")
    func hugeSeqs() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            for seq in ["9223372036854775807", "9223372036854775806", "9007199254740992", "-9223372036854775808", "99999999999999999999"] {
                for (method, body) in [(HTTPMethod.POST, "{\"a\":1}"), (.POST, ""), (.GET, nil), (.DELETE, nil)] as [(HTTPMethod, String?)] {
                    let response = try await client.send(method, "\(base)/anych/\(seq)", body: body)
                    #expect(response.status == 400, "\(method) \(seq)")
                    #expect(response.body.contains("seq must be"), "\(method) \(seq): \(response.body)")
                }
            }
            // The largest seq we accept works, including an empty body (nextWrite = seq + 1 must not overflow).
            let top = TrickleSeq.maximum
            #expect(try await client.send(.POST, "\(base)/anych/\(top)", body: "").status == 200)
            #expect(try await client.send(.POST, "\(base)/other/\(top)", body: "{\"a\":1}\n").status == 200)
            #expect(try await client.send(.GET, "\(base)/other/\(top)").body == "{\"a\":1}\n")
            #expect(try await client.send(.GET, "\(base)/other/next").header("Lp-Trickle-Latest") == "\(top + 1)")
            // POST -1 would resolve to nextWrite = 2^53: refused with the reason, and nextWrite stays put.
            let exhausted = try await client.send(.POST, "\(base)/other/-1", body: "{\"b\":2}\n")
            #expect(exhausted.status == 400 && exhausted.body.contains("every seq"), "\(exhausted.status) \(exhausted.body)")
            #expect(try await client.send(.GET, "\(base)/other/next").header("Lp-Trickle-Latest") == "\(top + 1)")
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "alive\n").status == 200)
        }
    }

    @Test("a POST with Expect: 100-continue (curl, for bodies over 1 MiB) hears 100 Continue before it sends the body")
    func expectContinue() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            let port = Int(base.split(separator: ":").last!)!
            let head = "POST /ch/0 HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n"
            // Without the interim answer the client waits (curl: a second per request) before sending anyway.
            let reply = try await RawConnection.sendAndReadReply(port: port, bytes: head, timeout: .seconds(10))
            #expect(reply.hasPrefix("HTTP/1.1 100"), "\(reply.debugDescription)")
            #expect(try await client.send(.POST, "\(base)/ch/1", body: "{\"a\":1}\n", headers: ["Expect": "100-continue"]).status == 200)
        }
    }

    @Test("a POST that breaks part-way leaves its segment open; a re-send that differs or ends short is refused (409), and the true re-send continues it without repeat or gap")
    func resendContinuesInterruptedSegment() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            // Half a segment in one chunk, then the client vanishes.
            try await Self.interruptSegment(with: "{\"n\":1}\n{\"n\":2}\n{\"n\"", server: server, base: base)
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                // A reader on the segment sees the first part, then waits: the segment is still open.
                group.addTask { try await client.send(.GET, "\(base)/ch/0") }
                try await waitUntil("the reader to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                // Different bytes where the held ones should repeat: not a re-send of this segment.
                let different = try await client.send(.POST, "\(base)/ch/0", body: "{\"n\":9}\n{\"n\":2}\n{\"n\":3}\n")
                #expect(different.status == 409 && different.body.contains("differs"), "\(different.status) \(different.body)")
                // A body that ends before it repeated them (an attempt cut short, ended as if complete).
                let short = try await client.send(.POST, "\(base)/ch/0", body: "{\"n\":1}\n")
                #expect(short.status == 409 && short.body.contains("ended before"), "\(short.status) \(short.body)")
                // The publisher re-sends the whole segment from its first byte: the reader gets it whole.
                let resend = try await client.send(.POST, "\(base)/ch/0", body: "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
                #expect(resend.status == 200)
                let read = try #require(try await group.next())
                #expect(read.body == "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
            }
        }
    }

    @Test("a re-send that arrives while the broken POST is still attached (the server has not heard it broke) takes the segment over: checked, no repeat, no gap; the old POST's late bytes and end are refused")
    func resendOverlappingTheBrokenPost() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            let port = Int(base.split(separator: ":").last!)!
            // The first POST sends part of the segment and stays connected (its client moved on; no RST came).
            let stale = try await OpenRawConnection.connect(port: port)
            defer { stale.close() }
            await stale.send(Self.chunkedHead + Self.chunk("{\"n\":1}\n{\"n\""))
            try await waitUntil("the first part to arrive") { server.nextWrite(ofChannel: "ch") == 1 }
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/0") }
                try await waitUntil("the reader to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                // The re-send, from the first byte, while the first POST is still attached: it takes over.
                let resend = try await client.send(.POST, "\(base)/ch/0", body: "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
                #expect(resend.status == 200)
                let read = try #require(try await group.next())
                #expect(read.body == "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
            }
            // The old POST wakes up: its late bytes and its end change nothing, and it hears so.
            await stale.send(Self.chunk(":9}\n") + "0\r\n\r\n")
            let reply = await stale.readReply(timeout: .seconds(10))
            #expect(reply.hasPrefix("HTTP/1.1 409"), "\(reply.debugDescription)")
            #expect(try await client.send(.GET, "\(base)/ch/0").body == "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
        }
    }

    @Test("a re-send arriving after its interrupted segment was ended (a later segment started) hears 409, never a 200 that drops its bytes")
    func lateResendIsRefused() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            try await Self.interruptSegment(with: "abc\n", server: server, base: base)
            #expect(try await client.send(.POST, "\(base)/ch/1", body: "next\n").status == 200)
            let late = try await client.send(.POST, "\(base)/ch/0", body: "abc\ndef\n")
            #expect(late.status == 409 && late.header("Lp-Trickle-Seq") == "0", "\(late.status) \(late.body)")
            // A segment that ended whole still answers a repeat as go-livepeer does: 200, the body discarded.
            #expect(try await client.send(.POST, "\(base)/ch/1", body: "next\n").status == 200)
            #expect(try await client.send(.GET, "\(base)/ch/0").body == "abc\n")
        }
    }

    @Test("a segment whose writer vanished ends when a later segment starts (readers do not hang)")
    func vanishedWriterEndsWhenPublisherMovesOn() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            try await Self.interruptSegment(with: "abc\n", server: server, base: base)
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/0") }
                try await waitUntil("the reader to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                #expect(try await client.send(.POST, "\(base)/ch/1", body: "next\n").status == 200)
                let read = try #require(try await group.next())
                #expect(read.body == "abc\n")
            }
        }
    }

    @Test("create with Expect-Content, /next, segment POST and GET with Lp-Trickle-Seq and Content-Type")
    func basicRoundTrip() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/ch", headers: ["Expect-Content": "application/jsonl"]).status == 200)
            let next = try await client.send(.GET, "\(base)/ch/next")
            #expect(next.status == 200 && next.header("Lp-Trickle-Latest") == "0" && next.body == "0\n")
            let post = try await client.send(.POST, "\(base)/ch/0", body: "{\"a\":1}\n")
            #expect(post.status == 200 && post.header("Lp-Trickle-Seq") == "0")
            let get = try await client.send(.GET, "\(base)/ch/0")
            #expect(get.status == 200)
            #expect(get.body == "{\"a\":1}\n")
            #expect(get.header("Lp-Trickle-Seq") == "0")
            #expect(get.header("Content-Type") == "application/jsonl")
            #expect(get.header("Lp-Trickle-Latest") == "1")
            #expect(try await client.send(.GET, "\(base)/ch/next").header("Lp-Trickle-Latest") == "1")
        }
    }

    @Test("-2 replays the most recent segment; -1 waits for the next one")
    func minusOneMinusTwo() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "zero\n")
            let latest = try await client.send(.GET, "\(base)/ch/-2")
            #expect(latest.body == "zero\n" && latest.header("Lp-Trickle-Seq") == "0")
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/-1") }
                // The GET on -1 resolves to nextWrite (1) and waits; it must not replay segment 0.
                try await waitUntil("the -1 GET to be waiting") { server.activeReaders(ofChannel: "ch") == 1 }
                _ = try await client.send(.POST, "\(base)/ch/1", body: "one\n")
                let next = try await group.next()!
                #expect(next.body == "one\n")
                #expect(next.header("Lp-Trickle-Seq") == "1")
            }
        }
    }

    @Test("470 with Lp-Trickle-Latest when ahead of nextWrite+1 and when evicted from the ring of 5")
    func notRetained() async throws {
        try await withTrickleServer { (_, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "0\n")
            let ahead = try await client.send(.GET, "\(base)/ch/5")
            #expect(ahead.status == 470)
            #expect(ahead.header("Lp-Trickle-Latest") == "1")
            #expect(ahead.header("Lp-Trickle-Seq") == "5")
            for seq in 1...7 { _ = try await client.send(.POST, "\(base)/ch/\(seq)", body: "\(seq)\n") }
            let behind = try await client.send(.GET, "\(base)/ch/2")
            #expect(behind.status == 470)
            #expect(behind.header("Lp-Trickle-Latest") == "8")
            #expect(try await client.send(.GET, "\(base)/ch/3").body == "3\n")
        }
    }

    @Test("channel DELETE releases a waiting GET with Lp-Trickle-Closed; retained segments stay readable for a grace period")
    func deleteChannel() async throws {
        try await withTrickleServer(.init(deletedChannelGracePeriod: .seconds(30))) { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "0\n")
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/1") }
                try await waitUntil("the GET to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                #expect(try await client.send(.DELETE, "\(base)/ch").status == 200)
                let released = try await group.next()!
                #expect(released.status == 200)
                #expect(released.header("Lp-Trickle-Closed") == "terminated")
                #expect(released.body.isEmpty)
            }
            #expect(server.channelCount == 0)
            // A reader one segment behind the final DELETE still gets the tail; past it, end of stream.
            #expect(try await client.send(.GET, "\(base)/ch/0").body == "0\n")
            #expect(try await client.send(.GET, "\(base)/ch/1").header("Lp-Trickle-Closed") == "terminated")
            #expect(try await client.send(.GET, "\(base)/ch/next").status == 404)
            // A stale publisher's POST does not resurrect the deleted channel; a new stream from seq 0 does.
            let stale = try await client.send(.POST, "\(base)/ch/1", body: "late")
            #expect(stale.status == 200 && stale.header("Lp-Trickle-Closed") == "terminated")
            #expect(server.channelCount == 0)
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x").status == 200)  // autocreate: a new channel
            #expect(try await client.send(.GET, "\(base)/ch/-2").body == "x")
            #expect(try await client.send(.DELETE, "\(base)/ch").status == 200)
            #expect(try await client.send(.DELETE, "\(base)/ch").status == 400)
        }
    }

    @Test("a reader behind a deleted channel's retained tail hears 470 pointing at the tail, reads it and counts the gap — never a silent Closed")
    func readerBehindDeletedChannel() async throws {
        try await withTrickleServer(.init(ringSize: 5, deletedChannelGracePeriod: .seconds(30))) { (_, base, client) async throws in
            for seq in 0..<8 { _ = try await client.send(.POST, "\(base)/ch/\(seq)", body: "\(seq)\n") }
            _ = try await client.send(.DELETE, "\(base)/ch/7")  // already complete: stays as it is
            #expect(try await client.send(.DELETE, "\(base)/ch").status == 200)
            // Segments 3…7 are retained; 0…2 were evicted before the close.
            let behind = try await client.send(.GET, "\(base)/ch/1")
            #expect(behind.status == 470)
            #expect(behind.header("Lp-Trickle-Latest") == "3")
            #expect(try await client.send(.GET, "\(base)/ch/3").body == "3\n")
            #expect(try await client.send(.GET, "\(base)/ch/8").header("Lp-Trickle-Closed") == "terminated")

            let subscriber = TrickleSubscriber(
                url: try TrickleChannelURL("\(base)/ch"),
                httpClient: client,
                configuration: .init(start: .seq(0)),
                logger: quietLogger
            )
            let gaps = Recorder<Int>()
            let bytes = Recorder<String>()
            let end = try await subscriber.run { event in
                switch event {
                case .gap(let from, let to): gaps.append(to - from)
                case .bytes(let buffer, _): bytes.append(String(buffer: buffer))
                default: break
                }
            }
            #expect(end == .closed)
            #expect(gaps.values.reduce(0, +) == 3)
            #expect(bytes.values.joined() == "3\n4\n5\n6\n7\n")
            #expect(subscriber.stats.gaps == 3)
        }
    }

    @Test("with no grace period a deleted channel is forgotten at once, like go-livepeer")
    func deleteWithoutGrace() async throws {
        try await withTrickleServer(.init(deletedChannelGracePeriod: .zero)) { (_, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "0\n")
            #expect(try await client.send(.DELETE, "\(base)/ch").status == 200)
            #expect(try await client.send(.GET, "\(base)/ch/0").status == 404)
        }
    }

    @Test("DELETE of a seq ends it now; of a seq not in the ring answers 400")
    func deleteSeq() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "0\n")
            #expect(try await client.send(.DELETE, "\(base)/ch/9").status == 400)
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/1") }
                try await waitUntil("the GET to wait on seq 1") { server.activeReaders(ofChannel: "ch") == 1 }
                #expect(try await client.send(.DELETE, "\(base)/ch/1").status == 200)
                let ended = try await group.next()!
                // An empty segment: 200, empty body, not `Closed` (go-livepeer semantics).
                #expect(ended.status == 200 && ended.body.isEmpty && ended.header("Lp-Trickle-Closed") == nil)
            }
        }
    }

    @Test("a segment over the server's byte limit is cut with 413")
    func segmentLimit() async throws {
        try await withTrickleServer(.init(maximumSegmentBytes: 1000)) { (_, base, client) async throws in
            let big = try await client.send(.POST, "\(base)/ch/0", body: String(repeating: "x", count: 5000))
            #expect(big.status == 413)
            #expect(try await client.send(.POST, "\(base)/ch/1", body: "fine\n").status == 200)
        }
    }

    @Test("with autocreate off, unknown channels get 404 and created ones work")
    func noAutocreate() async throws {
        try await withTrickleServer(.init(autocreate: false)) { (server, base, client) async throws in
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x").status == 404)
            #expect(try await client.send(.POST, "\(base)/ch").status == 404)
            server.createChannel(named: "ch")
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x\n").status == 200)
            #expect(try await client.send(.GET, "\(base)/ch/0").header("Content-Type") == "application/jsonl")
        }
    }

    @Test("channels under a base path, like an orchestrator's /ai/trickle/")
    func basePath() async throws {
        try await withTrickleServer(.init(basePath: "/ai/trickle")) { (_, base, client) async throws in
            #expect(base.hasSuffix("/ai/trickle"))
            #expect(try await client.send(.POST, "\(base)/ch/0", body: "x\n").status == 200)
            #expect(try await client.send(.GET, "\(base)/ch/0").body == "x\n")
        }
    }

    @Test("Lp-Trickle-Reset closes older segments, releasing their readers")
    func reset() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch/0", body: "0\n")
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                // A reader waits on seq 1, whose publisher never shows up.
                group.addTask { try await client.send(.GET, "\(base)/ch/1") }
                try await waitUntil("the reader to wait on seq 1") { server.activeReaders(ofChannel: "ch") == 1 }
                let restart = try await client.send(.POST, "\(base)/ch/2", body: "2\n", headers: ["Lp-Trickle-Reset": "1"])
                #expect(restart.status == 200)
                let released = try await group.next()!
                #expect(released.status == 200 && released.body.isEmpty)
            }
            #expect(server.nextWrite(ofChannel: "ch") == 3)
        }
    }

    @Test("idle channels are swept once idle for the timeout, not before; `_`-prefixed ones are exempt")
    func idleSweep() async throws {
        let clock = ManualClock()
        let configuration = TrickleServer.Configuration(idleSweepInterval: .seconds(60), idleChannelTimeout: .seconds(300))
        try await withTrickleServer(configuration, clock: clock) { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/quiet/0", body: "x\n")
            _ = try await client.send(.POST, "\(base)/_internal/0", body: "x\n")
            // The sweep and the housekeeping both wait on the clock.
            try await clock.waitForSleepers(2)
            // Four sweeps (240 s): not idle long enough yet.
            for _ in 0..<4 { try await clock.advance(by: .seconds(60), thenWaitForSleepers: 2) }
            #expect(server.nextWrite(ofChannel: "quiet") == 1)
            // The fifth (300 s) sweeps it.
            try await clock.advance(by: .seconds(60), thenWaitForSleepers: 2)
            #expect(server.nextWrite(ofChannel: "quiet") == nil)
            #expect(server.nextWrite(ofChannel: "_internal") == 1)
            #expect(try await client.send(.GET, "\(base)/quiet/0").status == 404)
        }
    }

    @Test("a segment whose writer vanished and never came back ends after the interrupted-segment timeout, not before")
    func vanishedWriterEndsAfterTimeout() async throws {
        let clock = ManualClock()
        try await withTrickleServer(.init(interruptedSegmentTimeout: .seconds(30)), clock: clock) { (server, base, client) async throws in
            _ = try await client.send(.POST, "\(base)/ch")
            let port = Int(base.split(separator: ":").last!)!
            let head = "POST /ch/0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            try await RawConnection.sendAndClose(port: port, bytes: head + "4\r\nabc\n\r\n")
            // Real sockets: the part arrives, the writer's connection is seen closing.
            try await waitUntil("the first part to arrive and its writer to vanish") {
                server.nextWrite(ofChannel: "ch") == 1 && server.activeWriters(ofChannel: "ch") == 0
            }
            try await withThrowingTaskGroup(of: RawResponse.self) { group in
                group.addTask { try await client.send(.GET, "\(base)/ch/0") }
                try await waitUntil("the reader to wait") { server.activeReaders(ofChannel: "ch") == 1 }
                try await clock.waitForSleepers(2)
                // 25 s after the writer vanished: the reader still waits for a re-send.
                for _ in 0..<5 { try await clock.advance(by: .seconds(5), thenWaitForSleepers: 2) }
                #expect(server.activeReaders(ofChannel: "ch") == 1)
                // Past 30 s the segment ends with what arrived.
                for _ in 0..<2 { try await clock.advance(by: .seconds(5), thenWaitForSleepers: 2) }
                let read = try #require(try await group.next())
                #expect(read.status == 200 && read.body == "abc\n")
            }
        }
    }
}
