import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #11: one client daemon follows many sessions. Real `serve`, multi-session `runner` and `client`
/// processes on loopback; numbered events per session; the egress checked event by event.
@Suite("One client daemon, many sessions", .timeLimit(.minutes(5)), .serialized)
struct FleetProcessTests {
    // MARK: Helpers

    /// The ports and processes of one scenario (all stopped by `stop()`).
    struct Fleet {
        let serve: FaultChild
        let runner: FaultChild
        let trickle: String
        let runnerAPI: String

        static func start() async throws -> Fleet {
            let (serve, servePort) = try await FaultChild.startedOnUnusedPort { port in
                ["serve", "--port", "\(port)", "--log-level", "error"]
            }
            let (runner, runnerPort) = try await FaultChild.startedOnUnusedPort { port in
                ["runner", "--telemetry", "on", "--listen", "127.0.0.1:\(port)", "--segment-window", "1", "--log-level", "error"]
            }
            return Fleet(serve: serve, runner: runner, trickle: "http://127.0.0.1:\(servePort)", runnerAPI: "http://127.0.0.1:\(runnerPort)")
        }

        func channel(_ session: Int) -> String { "\(self.trickle)/fleet-s\(session)-events" }

        /// Starts `count` sessions on the runner.
        func startSessions(_ sessions: Range<Int>, client: HTTPClient) async throws {
            for session in sessions {
                let body = #"{"session_id":"s\#(session)","events_url":"\#(self.channel(session))"}"#
                let answer = try await client.send(.POST, "\(self.runnerAPI)/v1/sessions", body: body)
                #expect(answer.status == 201, "\(answer.body)")
            }
        }

        /// Posts numbered metric events `numbers` to every session in `sessions` (one JSONL body each).
        func send(_ numbers: Range<Int>, to sessions: Range<Int>, client: HTTPClient) async throws {
            for session in sessions {
                let body = numbers.map { #"{"type":"metric","n":\#($0)}"# }.joined(separator: "\n")
                let answer = try await client.send(.POST, "\(self.runnerAPI)/v1/sessions/s\(session)/telemetry", body: body)
                #expect(answer.status == 202, "\(answer.body)")
            }
        }

        /// Ends sessions, all at once: the runner flushes each and closes its channel.
        func endSessions(_ sessions: Range<Int>, client: HTTPClient) async throws {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for session in sessions {
                    group.addTask { try await client.send(.DELETE, "\(self.runnerAPI)/v1/sessions/s\(session)").status }
                }
                for try await status in group { #expect(status == 200) }
            }
        }

        func stop() {
            self.runner.stopIfRunning()
            self.serve.stopIfRunning()
        }
    }

    /// Counts of each (session, n) among envelopes: the metric events a test sent, by `data.session_id` and
    /// `data.n` (the runner's own `relay_ready` and similar envelopes are left out).
    struct Tally {
        var counts: [String: Int] = [:]
        var total = 0

        mutating func add(envelope: Any) {
            guard let data = (envelope as? [String: Any])?["data"] as? [String: Any], data["type"] as? String == "metric",
                let session = data["session_id"] as? String, let n = data["n"] as? Int
            else { return }
            self.counts["\(session)#\(n)", default: 0] += 1
            self.total += 1
        }

        static func file(_ path: String) -> Tally {
            var tally = Tally()
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) { tally.add(envelope: object) }
            }
            return tally
        }

        static func endpoint(_ endpoint: ScriptedEndpoint) -> Tally {
            var tally = Tally()
            for (request, status) in endpoint.requests where (200..<300).contains(status.code) {
                let body = (try? JSONSerialization.jsonObject(with: Data(request.body.utf8))) as? [String: Any]
                for event in (body?["events"] as? [Any]) ?? [] { tally.add(envelope: event) }
            }
            return tally
        }

        func count(_ session: Int, _ n: Int) -> Int { self.counts["s\(session)#\(n)"] ?? 0 }

        /// Whether every (session, n) of `sessions` × `numbers` arrived at least once.
        func hasAll(_ sessions: some Sequence<Int>, _ numbers: Range<Int>) -> Bool {
            sessions.allSatisfy { session in numbers.allSatisfy { self.count(session, $0) > 0 } }
        }
    }

    static func subscriptions(_ client: HTTPClient, _ api: String) async throws -> [[String: Any]] {
        let answer = try await client.send(.GET, "\(api)/v1/subscriptions")
        let object = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
        return (object?["subscriptions"] as? [[String: Any]]) ?? []
    }

    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("fleet-\(name)-\(UUID().uuidString)").path
    }

    // MARK: Scenarios

    @Test("50 sessions, one daemon (10 from flags, 40 from the API), one file sink: every event once; DELETE stops only that one")
    func fiftySessions() async throws {
        let fleet = try await Fleet.start()
        defer { fleet.stop() }
        let output = self.temporaryPath("out.jsonl")
        let state = self.temporaryPath("state")
        defer {
            try? FileManager.default.removeItem(atPath: output)
            try? FileManager.default.removeItem(atPath: state)
        }
        let sessions = 0..<50
        let flagged = 0..<10
        let (client, clientPort) = try await FaultChild.startedOnUnusedPort { port in
            ["client", "--sink", "file:\(output)", "--listen", "127.0.0.1:\(port)", "--wait-for-channel", "120", "--start", "0",
                "--quiet", "--keep-running", "--spool-dir", state]
                + flagged.flatMap { ["--events-url", fleet.channel($0)] }
        }
        let api = "http://127.0.0.1:\(clientPort)"

        defer { client.stopIfRunning() }
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { http in
            for session in sessions.dropFirst(flagged.count) {
                let answer = try await http.send(
                    .POST, "\(api)/v1/subscriptions", body: #"{"events_url":"\#(fleet.channel(session))","session_id":"s\#(session)","start":0}"#)
                #expect(answer.status == 201, "\(answer.body)")
            }
            // The same channel twice is refused, and so is a body without a URL.
            #expect(try await http.send(.POST, "\(api)/v1/subscriptions", body: #"{"events_url":"\#(fleet.channel(12))"}"#).status == 409)
            let bad = try await http.send(.POST, "\(api)/v1/subscriptions", body: #"{"session_id":"x"}"#)
            #expect(bad.status == 400 && bad.body.contains("events_url"), "\(bad.body)")
            #expect(try await Self.subscriptions(http, api).count == 50)
            // Pages: `limit` at most, `total` counts them all, `next` continues where a page ended.
            var pagedIDs: [String] = []
            var after: String? = nil
            repeat {
                let page = try await http.send(.GET, "\(api)/v1/subscriptions?limit=15" + (after.map { "&after=\($0)" } ?? ""))
                let object = try #require(try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any])
                let items = try #require(object["subscriptions"] as? [[String: Any]])
                #expect(items.count <= 15 && object["total"] as? Int == 50, "\(page.body.prefix(200))")
                pagedIDs += items.compactMap { $0["id"] as? String }
                after = object["next"] as? String
            } while after != nil && pagedIDs.count < 100
            #expect(pagedIDs.count == 50 && Set(pagedIDs).count == 50)
            #expect(pagedIDs == (try await Self.subscriptions(http, api)).compactMap { $0["id"] as? String }, "the pages, in order, are the list")
            #expect(try await http.send(.GET, "\(api)/v1/subscriptions?limit=0").status == 400)
            #expect(try await http.send(.GET, "\(api)/v1/subscriptions?limit=99999999999999999999").status == 400)
            // The gateway says a runner started: its subscription asks at once (200 with it); an unknown id is 404.
            let expected = try await http.send(.POST, "\(api)/v1/subscriptions/\(pagedIDs[20])/expect")
            #expect(expected.status == 200 && expected.body.contains(pagedIDs[20]), "\(expected.body)")
            #expect(try await http.send(.POST, "\(api)/v1/subscriptions/nope/expect").status == 404)

            try await fleet.startSessions(sessions, client: http)
            try await fleet.send(0..<100, to: sessions, client: http)
            try await waitUntil(timeout: .seconds(120), every: .milliseconds(200), "the first 100 events of 50 sessions in the file") {
                Tally.file(output).hasAll(sessions, 0..<100)
            }

            // DELETE one subscription: its channel is no longer read; the others go on.
            let removed = 49
            let listed = try await Self.subscriptions(http, api)
            let removedID = try #require(listed.first { ($0["events_url"] as? String) == fleet.channel(removed) }?["id"] as? String)
            #expect(try await http.send(.DELETE, "\(api)/v1/subscriptions/\(removedID)").status == 200)
            #expect(try await http.send(.DELETE, "\(api)/v1/subscriptions/\(removedID)").status == 404)
            #expect(try await Self.subscriptions(http, api).count == 49)

            try await fleet.send(100..<200, to: sessions, client: http)
            try await fleet.endSessions(sessions, client: http)
            let kept = sessions.filter { $0 != removed }
            try await waitUntil(timeout: .seconds(120), every: .milliseconds(200), "every subscription to finish with its 200 events") {
                let listed = try await Self.subscriptions(http, api)
                return listed.count == 49 && listed.allSatisfy { $0["state"] as? String == "finished" }
            }
            let tally = Tally.file(output)
            #expect(tally.hasAll(kept, 0..<200))
            #expect(tally.counts.values.allSatisfy { $0 == 1 }, "duplicates: \(tally.counts.filter { $0.value > 1 }.prefix(5))")
            #expect((100..<200).allSatisfy { tally.count(removed, $0) == 0 }, "the deleted subscription kept reading")
            #expect(tally.total == 49 * 200 + 100)

            // The listing carries each one's counters; /metrics adds them up without a label per session.
            let final = try await Self.subscriptions(http, api)
            for subscription in final {
                #expect(subscription["end"] as? String == "closed")
                #expect((subscription["events"] as? Int ?? 0) >= 200, "\(subscription)")  // + the runner's relay_ready
                #expect(subscription["gaps"] as? Int == 0)
                #expect(subscription["last_seq"] is Int)
            }
            let metrics = try await http.send(.GET, "\(api)/metrics").body
            #expect(metrics.contains(#"trickle_relay_client_subscriptions{state="finished"} 49"#), "\(metrics)")
            #expect(!metrics.contains("s12"))
        }
        client.signal(SIGTERM)
        #expect(await client.exited.wait() == 0)
    }

    @Test("20 sessions into an HTTP endpoint through the spool; kill -9 twice, restart with only --config: every event arrives")
    func crashAndResume() async throws {
        let fleet = try await Fleet.start()
        defer { fleet.stop() }
        let spool = self.temporaryPath("spool")
        let configPath = self.temporaryPath("client.json")
        defer {
            try? FileManager.default.removeItem(atPath: spool)
            try? FileManager.default.removeItem(atPath: configPath)
        }
        let sessions = 0..<20
        let configured = 0..<10
        let endpoint = ScriptedEndpoint { _, _ in (.ok, [:]) }
        try await endpoint.run { metricsURL in
            let clientPort = try await unusedPort()
            let api = "http://127.0.0.1:\(clientPort)"
            let subscriptions = configured.map { #"{"events_url":"\#(fleet.channel($0))","start":0}"# }.joined(separator: ",")
            try Data(
                #"{"sink":"\#(metricsURL)","spool_dir":"\#(spool)","listen":"127.0.0.1:\#(clientPort)","wait_for_channel":120,"subscriptions":[\#(subscriptions)]}"#
                    .utf8
            ).write(to: URL(fileURLWithPath: configPath))
            let environment = ["TRICKLE_RELAY_METRICS_API_KEY": "fleet-key"]
            func startClient() async throws -> FaultChild {
                try await FaultChild.started(
                    ["client", "--config", configPath, "--quiet"],
                    environment: environment,
                    healthURL: "\(api)/healthz"
                )
            }
            try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { http in
                var client = try await startClient()
                for session in sessions.dropFirst(configured.count) {
                    let answer = try await http.send(.POST, "\(api)/v1/subscriptions", body: #"{"events_url":"\#(fleet.channel(session))","start":0}"#)
                    #expect(answer.status == 201, "\(answer.body)")
                }
                try await fleet.startSessions(sessions, client: http)
                // Three rounds of events; the daemon is killed (no chance to flush) after each of the first two.
                for round in 0..<3 {
                    let numbers = (round * 100)..<(round * 100 + 100)
                    try await fleet.send(numbers, to: sessions, client: http)
                    guard round < 2 else { break }
                    try await waitUntil(timeout: .seconds(60), every: .milliseconds(100), "round \(round) to reach the endpoint in part") {
                        Tally.endpoint(endpoint).total >= (round * 2_000) + 500
                    }
                    kill(client.pid, SIGKILL)
                    _ = await client.exited.wait()
                    client = try await startClient()
                }
                defer { client.stopIfRunning() }
                try await fleet.endSessions(sessions, client: http)
                try await waitUntil(timeout: .seconds(120), every: .milliseconds(200), "all 6,000 events at the endpoint") {
                    Tally.endpoint(endpoint).hasAll(sessions, 0..<300)
                }
                let tally = Tally.endpoint(endpoint)
                let duplicates = tally.counts.values.reduce(0) { $0 + $1 - 1 }
                print("fleet crash test: \(tally.counts.count) distinct of 6000, \(duplicates) duplicates after 2 kill -9")
                #expect(tally.counts.count == 6_000)
                // Every subscription came back after the restarts (from the file and from subscriptions.json).
                let listed = try await Self.subscriptions(http, api)
                #expect(listed.count == 20, "\(listed.map { $0["id"] ?? "" })")
                client.signal(SIGTERM)
                #expect(await client.exited.wait() == 0)
            }
        }
    }

    @Test("--config: SIGHUP adds and removes subscriptions; a broken file exits 64 at start naming the field, and is refused at reload")
    func configurationReload() async throws {
        let fleet = try await Fleet.start()
        defer { fleet.stop() }
        let configPath = self.temporaryPath("client.json")
        let state = self.temporaryPath("state")
        defer {
            try? FileManager.default.removeItem(atPath: configPath)
            try? FileManager.default.removeItem(atPath: state)
        }
        func write(_ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: configPath)) }

        // Broken at start: exit 64, the field and the reason named.
        try write(#"{"sink":"null","subscriptions":[{"events_url":"\#(fleet.channel(0))"},{"events_url":"ftp://nowhere/x"}]}"#)
        let refused = try await runTrickleRelay(["client", "--config", configPath])
        #expect(refused.status == 64)
        #expect(refused.errors.contains("subscriptions[1].events_url"), "\(refused.errors)")
        try write(#"{"sink":"null","sinks":"log"}"#)
        let typo = try await runTrickleRelay(["client", "--config", configPath])
        #expect(typo.status == 64 && typo.errors.contains("sinks: unknown field"), "\(typo.errors)")

        let clientPort = try await unusedPort()
        let api = "http://127.0.0.1:\(clientPort)"
        func configuration(_ sessions: [Int]) -> String {
            let entries = sessions.map { #"{"events_url":"\#(fleet.channel($0))","session_id":"s\#($0)"}"# }.joined(separator: ",")
            return #"{"sink":"null","spool_dir":"\#(state)","listen":"127.0.0.1:\#(clientPort)","wait_for_channel":120,"subscriptions":[\#(entries)]}"#
        }
        try write(configuration([0, 1]))
        let client = try await FaultChild.started(["client", "--config", configPath, "--quiet"], healthURL: "\(api)/healthz")
        defer { client.stopIfRunning() }
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { http in
            @Sendable func sessionsListed() async throws -> Set<String> {
                Set(try await Self.subscriptions(http, api).compactMap { $0["session_id"] as? String })
            }
            #expect(try await sessionsListed() == ["s0", "s1"])

            try write(configuration([1, 2, 3]))
            client.signal(SIGHUP)
            try await waitUntil(timeout: .seconds(20), every: .milliseconds(50), "the reload to add s2, s3 and remove s0") {
                try await sessionsListed() == ["s1", "s2", "s3"]
            }

            try write(#"{"sink":"null","subscriptions":[{"events_url":"\#(fleet.channel(4))","start":"yesterday"}]}"#)
            client.signal(SIGHUP)
            try await waitUntil(timeout: .seconds(20), every: .milliseconds(50), "the refusal to be logged") {
                client.lines.values.contains { $0.contains("configuration file was refused") && $0.contains("subscriptions[0].start") }
            }
            #expect(try await sessionsListed() == ["s1", "s2", "s3"])
            #expect(client.process.isRunning)
        }
        client.signal(SIGTERM)
        #expect(await client.exited.wait() == 0)
    }
}
