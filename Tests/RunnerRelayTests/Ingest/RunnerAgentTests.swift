import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import RunnerRelay

/// Runs a trickle server and a runner agent (both on loopback port 0).
func withAgent(
    server serverConfiguration: TrickleServer.Configuration = .init(),
    _ configure: (inout RunnerAgent.Configuration) -> Void = { _ in },
    _ body: @Sendable (RunnerAgent, String, String, HTTPClient, TrickleServer) async throws -> Void
) async throws {
    var configuration = RunnerAgent.Configuration(port: 0)
    configuration.sinkDefaults.isTelemetryEnabled = true
    configure(&configuration)
    let settings = configuration
    try await withTrickleServer(serverConfiguration) { (server, trickleBase, client) async throws in
        let agent = try RunnerAgent(configuration: settings, httpClient: client, logger: quietLogger)
        // Shut the agent down gracefully, as SIGTERM would: it stops accepting before it goes.
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await agent.run() }
                let port = try await agent.waitUntilListening()
                try await body(agent, "http://127.0.0.1:\(port)", trickleBase, client, server)
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
    }
}

@Suite("RunnerAgent ingest API", .timeLimit(.minutes(1)))
struct RunnerAgentTests {
    @Test("past --max-sessions a new session is answered 503 with Retry-After and counted; ending one makes room")
    func sessionLimit() async throws {
        try await withAgent({ $0.maximumSessions = 2 }) { _, api, trickle, client, _ in
            for id in ["m1", "m2"] {
                #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"\#(id)","events_url":"\#(trickle)/\#(id)-events"}"#).status == 201)
            }
            let refused = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"m3","events_url":"\#(trickle)/m3-events"}"#)
            #expect(refused.status == 503 && refused.header("Retry-After") == "5" && refused.body.contains("maximum of 2 sessions"), "\(refused.body)")
            #expect(try await client.send(.GET, "\(api)/healthz").body.contains(#""sessions":2"#))
            #expect(try await client.send(.GET, "\(api)/metrics").body.contains("trickle_relay_sessions_refused_total 1"))
            #expect(try await client.send(.DELETE, "\(api)/v1/sessions/m1").status == 200)
            #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"m3","events_url":"\#(trickle)/m3-events"}"#).status == 201)
        }
    }

    @Test("a session's lifecycle: start, telemetry and events in, DELETE flushes and reports what was sent")
    func lifecycle() async throws {
        try await withAgent { (_, api, trickle, client, server) async throws in
            server.createChannel(named: "s1-events")
            let seen = Recorder<String>()
            let reader = JSONLReader(url: try TrickleChannelURL("\(trickle)/s1-events"), httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try await reader.run { item in if case .line(let line) = item { seen.append(String(buffer: line.bytes)) } }
                }
                let start = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s1","events_url":"\#(trickle)/s1-events","connection_id":"c1"}"#)
                #expect(start.status == 201)
                #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s1","events_url":"\#(trickle)/x"}"#).status == 409)
                let telemetry = try await client.send(
                    .POST,
                    "\(api)/v1/sessions/s1/telemetry",
                    body: "{\"type\":\"metric\",\"v\":1}\n{\"type\":\"telemetry\",\"event\":{\"type\":\"metric\",\"v\":2}}\n{\"type\":\"metric\",\"v\":3}\n"
                )
                #expect(telemetry.status == 202)
                #expect(telemetry.body == #"{"accepted":3}"#)
                #expect(try await client.send(.POST, "\(api)/v1/sessions/s1/events", body: #"{"type":"notification","payload":{}}"#).status == 202)
                let health = try await client.send(.GET, "\(api)/healthz")
                #expect(health.body.contains(#""sessions":1"#))
                try await seen.wait("the four lines") { $0.count(where: { !$0.contains("relay_ready") }) >= 4 }
                let end = try await client.send(.DELETE, "\(api)/v1/sessions/s1")
                #expect(end.status == 200)
                // The same snake_case shape as the POST that started it, plus what was relayed and lost.
                let summary = try #require(try JSONSerialization.jsonObject(with: Data(end.body.utf8)) as? [String: Any])
                #expect(summary["session_id"] as? String == "s1")
                #expect(summary["events_url"] as? String == "\(trickle)/s1-events")
                let sent = try #require(summary["telemetry"] as? [String: Any])
                #expect(sent["relayed"] as? Int == 4)  // three events and relay_ready
                #expect(sent["control_written"] as? Int == 1)
                #expect(summary["flushed_in_time"] as? Bool == true)
                try await group.waitForAll()  // the DELETE closed the channel: the reader ended
            }
            let metrics = try await client.send(.GET, "\(api)/metrics")
            #expect(metrics.body.contains("trickle_relay_telemetry_relayed_total 4"))
            #expect(metrics.body.contains("trickle_relay_sessions_active 0"))
            #expect(try await client.send(.GET, "\(api)/healthz").body.contains(#""sessions":0"#))
        }
    }

    @Test("bad input: invalid JSON is 400 naming the line, bad sessions are 400, unknown sessions 404, big bodies 413")
    func badInput() async throws {
        try await withAgent({ $0.maximumBodyBytes = 1024 }) { (_, api, trickle, client, server) async throws in
            server.createChannel(named: "s2-events")
            #expect(try await client.send(.POST, "\(api)/v1/sessions", body: "nope").status == 400)
            #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s2"}"#).status == 400)
            let badURL = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s2","events_url":"ftp://x/y"}"#)
            #expect(badURL.status == 400 && badURL.body.contains("http(s)://"))
            #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s2","events_url":"\#(trickle)/s2-events"}"#).status == 201)
            let invalid = try await client.send(.POST, "\(api)/v1/sessions/s2/telemetry", body: "{\"type\":\"ok\"}\n{broken\n")
            #expect(invalid.status == 400)
            #expect(invalid.body.contains("line 2"))
            #expect(try await client.send(.POST, "\(api)/v1/sessions/s2/events", body: "[1]").status == 400)
            #expect(try await client.send(.POST, "\(api)/v1/sessions/s2/telemetry", body: String(repeating: " ", count: 2000) + "{}").status == 413)
            #expect(try await client.send(.POST, "\(api)/v1/sessions/nope/telemetry", body: #"{"type":"x"}"#).status == 404)
            #expect(try await client.send(.POST, "\(api)/v1/sessions/nope/events", body: #"{"type":"x"}"#).status == 404)
            #expect(try await client.send(.DELETE, "\(api)/v1/sessions/nope").status == 404)
            #expect(try await client.send(.DELETE, "\(api)/v1/sessions/s2").status == 200)
        }
    }

    @Test(
        "session ids are path segments: a '/', spaces, control characters or 129+ characters are refused with 400",
        arguments: ["a/b", "a b", "tab\tid", "", String(repeating: "x", count: 129), "é", "..%2F"]
    )
    func badSessionIDs(id: String) async throws {
        try await withAgent { (_, api, trickle, client, _) async throws in
            let body = try JSONSerialization.data(withJSONObject: ["session_id": id, "events_url": "\(trickle)/x-events"])
            let response = try await client.send(.POST, "\(api)/v1/sessions", body: String(decoding: body, as: UTF8.self))
            #expect(response.status == 400)
            #expect(response.body.contains("session_id"))
        }
    }

    @Test("a connection that sends no complete request within the idle timeout is closed (slow headers, idle keep-alive)")
    func idleConnectionsClosed() async throws {
        try await withAgent({ $0.connectionIdleTimeout = .milliseconds(300) }) { (_, api, _, _, _) async throws in
            let port = Int(api.split(separator: ":").last!)!
            // Half a request head, then nothing: the server must hang up on its own.
            let closed = try await RawConnection.sendAndWaitForClose(port: port, bytes: "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Le", timeout: .seconds(10))
            #expect(closed, "the slow-header connection was still open after 10 s")
            let idle = try await RawConnection.sendAndWaitForClose(port: port, bytes: "", timeout: .seconds(10))
            #expect(idle, "the idle connection was still open after 10 s")
        }
    }

    @Test("a full control queue answers 503 with Retry-After; nothing accepted is lost")
    func controlBackPressure() async throws {
        try await withAgent({
            $0.sinkDefaults.controlQueueCapacity = 2
            $0.writer = .init(publisher: .init(mimeType: "application/jsonl", maximumBufferedBytes: 1024))
        }) { (_, api, trickle, client, server) async throws in
            server.createChannel(named: "s3-events")
            #expect(try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s3","events_url":"\#(trickle)/s3-events"}"#).status == 201)
            server.pauseIngest()
            let line = #"{"type":"logs","lines":["\#(String(repeating: "l", count: 20_000))"]}"#
            var accepted = 0
            var sawBusy = false
            for _ in 0..<5000 where !sawBusy {
                let response = try await client.send(.POST, "\(api)/v1/sessions/s3/events", body: line)
                if response.status == 503 {
                    sawBusy = true
                    #expect(response.header("Retry-After") == "1")
                } else {
                    #expect(response.status == 202)
                    accepted += 1
                }
            }
            #expect(sawBusy)
            server.resumeIngest()
            let end = try await client.send(.DELETE, "\(api)/v1/sessions/s3")
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(end.body.utf8)) as? [String: Any])
            #expect((summary["telemetry"] as? [String: Any])?["control_written"] as? Int == accepted)
        }
    }

    @Test("a token guards every route but /healthz; beyond loopback the agent refuses to start without one")
    func tokens() async throws {
        try await withAgent({ $0.token = BearerToken("s3cret-token") }) { (_, api, _, client, _) async throws in
            #expect(try await client.send(.GET, "\(api)/healthz").status == 200)
            #expect(try await client.send(.GET, "\(api)/metrics").status == 401)
            #expect(try await client.send(.GET, "\(api)/metrics", headers: ["Authorization": "Bearer wrong"]).status == 401)
            #expect(try await client.send(.GET, "\(api)/metrics", headers: ["Authorization": "Bearer s3cret-token"]).status == 200)
            // RFC 7235: the scheme is case-insensitive.
            #expect(try await client.send(.GET, "\(api)/metrics", headers: ["Authorization": "bearer s3cret-token"]).status == 200)
            #expect(try await client.send(.GET, "\(api)/metrics", headers: ["Authorization": "BEARER s3cret-token"]).status == 200)
            #expect(try await client.send(.GET, "\(api)/metrics", headers: ["Authorization": "Basic s3cret-token"]).status == 401)
        }
        try await HTTPClient.withHTTPClient { client in
            #expect(throws: RunnerAgent.StartupError.self) {
                try RunnerAgent(configuration: .init(host: "0.0.0.0"), httpClient: client, logger: quietLogger)
            }
            _ = try RunnerAgent(configuration: .init(host: "0.0.0.0", token: BearerToken("t")), httpClient: client, logger: quietLogger)
        }
        #expect(BearerToken("s3cret-token").description == "<REDACTED>")
        #expect(BearerToken("abc").matches("abc") && !BearerToken("abc").matches("abd") && !BearerToken("abc").matches("ab"))
    }

    @Test("GET /v1/sessions lists the running sessions with their counters; GET / is the page, served without the token")
    func sessionsListingAndPage() async throws {
        try await withAgent({ $0.token = BearerToken("s3cret-token") }) { (_, api, trickle, client, _) async throws in
            let auth = ["Authorization": "Bearer s3cret-token"]
            #expect(try await client.send(.GET, "\(api)/v1/sessions", headers: auth).body == #"{"sessions":[]}"#)
            for id in ["b-2", "a-1"] {
                let started = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"\#(id)","events_url":"\#(trickle)/\#(id)-events"}"#, headers: auth)
                #expect(started.status == 201)
            }
            _ = try await client.send(.POST, "\(api)/v1/sessions/a-1/telemetry", body: #"{"type":"metric","n":1}"#, headers: auth)
            #expect(try await client.send(.GET, "\(api)/v1/sessions").status == 401)
            let listing = try JSONSerialization.jsonObject(with: Data(try await client.send(.GET, "\(api)/v1/sessions", headers: auth).body.utf8)) as? [String: Any]
            let sessions = try #require(listing?["sessions"] as? [[String: Any]])
            #expect(sessions.map { $0["session_id"] as? String } == ["a-1", "b-2"], "sorted by id")
            #expect((sessions[0]["telemetry"] as? [String: Any])?["queued_events"] != nil)
            let page = try await client.send(.GET, "\(api)/")
            #expect(page.status == 200 && page.body.contains("runner agent"))
            #expect(try await client.send(.GET, "\(api)/ui/page.js").status == 200)
        }
    }

    @Test("graceful shutdown (SIGTERM) stops intake and flushes every session before returning")
    func shutdownFlushes() async throws {
        try await withTrickleServer { (server, trickle, client) async throws in
            server.createChannel(named: "s4-events")
            var configuration = RunnerAgent.Configuration(port: 0)
            configuration.sinkDefaults.isTelemetryEnabled = true
            let agent = try RunnerAgent(configuration: configuration, httpClient: client, logger: quietLogger)
            let seen = Recorder<String>()
            let reader = JSONLReader(url: try TrickleChannelURL("\(trickle)/s4-events"), httpClient: client, configuration: .init(subscriber: .init(start: .seq(0))), logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { outer in
                outer.addTask {
                    _ = try await reader.run { item in if case .line(let line) = item { seen.append(String(buffer: line.bytes)) } }
                }
                try await testGracefulShutdown { trigger in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await agent.run() }
                        let api = "http://127.0.0.1:\(try await agent.waitUntilListening())"
                        _ = try await client.send(.POST, "\(api)/v1/sessions", body: #"{"session_id":"s4","events_url":"\#(trickle)/s4-events"}"#)
                        let body = (0..<500).map { #"{"type":"metric","n":\#($0)}"# }.joined(separator: "\n")
                        #expect(try await client.send(.POST, "\(api)/v1/sessions/s4/telemetry", body: body).status == 202)
                        trigger.triggerGracefulShutdown()
                        try await group.waitForAll()
                    }
                }
                try await outer.waitForAll()  // the flush closed the channel, so the reader ended
            }
            #expect(seen.values.count(where: { $0.contains(#""type":"metric""#) }) == 500)
        }
    }
}
