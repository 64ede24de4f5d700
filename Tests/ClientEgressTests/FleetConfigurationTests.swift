import ClientEgress
import Foundation
import NIOCore
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// Issue #11's library parts: per-channel spool positions, the configuration file, subscription ids.
@Suite("Fleet: spool per channel, configuration file, subscription ids", .timeLimit(.minutes(1)))
struct FleetConfigurationTests {
    private func record(_ subscription: String, seq: Int, line: Int) -> TelemetryRecord {
        TelemetryRecord(
            envelope: ByteBuffer(string: #"{"id":"\#(subscription)-\#(seq)-\#(line)","type":"stream_trace","data":{"type":"metric"}}"#),
            seq: seq,
            lineNumber: line,
            subscription: subscription
        )
    }

    @Test("records of several channels share one spool; after a crash each channel resumes from its own position")
    func perChannelPositions() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-spool-\(UUID().uuidString)").path
        let crashed = directory + "-crashed"
        defer {
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: crashed)
        }
        let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 600), logger: quietLogger)
        await spool.append([record("a-events-1", seq: 3, line: 1), record("b-events-2", seq: 7, line: 4), record("a-events-1", seq: 3, line: 2)])
        await spool.append([record("b-events-2", seq: 8, line: 1), record("", seq: 11, line: 9)])
        // Delivered and acknowledged up to here: their segment files go, the positions must not.
        let first = try await spool.read(from: spool.deliveryStart, maximumRecords: 100)
        #expect(first.records.map(\.subscription) == ["a-events-1", "b-events-2", "a-events-1", "b-events-2", ""])
        await spool.acknowledge(through: first.next)
        await spool.append([record("c-events-3", seq: 0, line: 5)])
        // A kill -9 now: the files as they are, without the close that writes the state.
        try FileManager.default.copyItem(atPath: directory, toPath: crashed)
        spool.close()

        let reopened = try Spool(configuration: .init(directory: crashed), logger: quietLogger)
        defer { reopened.close() }
        #expect(reopened.resumePositions["a-events-1"] == .init(seq: 3, line: 2))
        #expect(reopened.resumePositions["b-events-2"] == .init(seq: 8, line: 1))
        #expect(reopened.resumePositions["c-events-3"] == .init(seq: 0, line: 5))
        #expect(reopened.resumePosition == .init(seq: 11, line: 9))  // the single-channel format, still read
        let left = try await reopened.read(from: reopened.deliveryStart, maximumRecords: 100)
        #expect(left.records.map { String(buffer: $0.envelope) } == [#"{"id":"c-events-3-0-5","type":"stream_trace","data":{"type":"metric"}}"#])
        #expect(left.records.first?.subscription == "c-events-3")
    }

    @Test("a subscription's id is stable, path-safe, and the same with or without a jwt= token")
    func subscriptionIDs() throws {
        let plain = SubscriptionID.derived(from: try TrickleChannelURL("https://orch.example/ai/trickle/job-42-events"))
        let withToken = SubscriptionID.derived(from: try TrickleChannelURL("https://orch.example/ai/trickle/job-42-events?jwt=secret"))
        let otherHost = SubscriptionID.derived(from: try TrickleChannelURL("https://other.example/ai/trickle/job-42-events"))
        #expect(plain == withToken)
        #expect(plain != otherHost)
        #expect(plain.hasPrefix("job-42-events-") && SubscriptionID.isValid(plain))
        #expect(!plain.contains("secret"))
        let odd = SubscriptionID.derived(from: try TrickleChannelURL("http://h/" + String(repeating: "ü/", count: 3) + "a+b(c)%20d%2F"))
        #expect(SubscriptionID.isValid(odd), "\(odd)")
        #expect(!SubscriptionID.isValid("../x") && !SubscriptionID.isValid("") && !SubscriptionID.isValid(String(repeating: "a", count: 65)))
    }

    @Test("a good configuration file", arguments: [
        #"{}"#,
        #"{"sink":"null","listen":"off","spool":false,"wait_for_channel":0.5,"subscriptions":[]}"#,
        #"{"sink":"file:/tmp/x.jsonl","spool_max_bytes":1048576,"subscriptions":[{"events_url":"http://h:1/a-events","session_id":"a","start":7},{"events_url":"http://h:1/b-events","start":"next"}]}"#,
    ])
    func goodFile(text: String) throws {
        let file = try ClientConfigurationFile(data: Data(text.utf8), path: "client.json")
        #expect(file.subscriptions.allSatisfy { $0.origin == .config })
    }

    @Test("every field a configuration file may hold is parsed into its value")
    func everyField() throws {
        let text = #"""
            {"sink":"file:/var/lib/telemetry.jsonl","api_key_file":"/etc/trickle/key","spool_dir":"/var/spool/trickle",
             "spool":true,"spool_max_bytes":2097152,"listen":"127.0.0.1:7999","stream_token_file":"/etc/trickle/stream",
             "wait_for_channel":12.5,"reconnect_grace":45,"kafka_topic":"telemetry","kafka_compression":"zstd",
             "kafka_options":{"ssl.ca.location":"/etc/ssl/ca.pem","acks":"all"},
             "ca_file":"/etc/trickle/ca.pem","ca_only":true,"client_cert":"/etc/trickle/client.pem","client_key":"/etc/trickle/client.key",
             "subscriptions":[{"events_url":"http://h:1/a-events","session_id":"sess-a","start":7},
                              {"events_url":"https://h/ai/trickle/b-events","start":"next"},
                              {"events_url":"http://h:1/c-events","start":"latest"}]}
            """#
        let file = try ClientConfigurationFile(data: Data(text.utf8), path: "client.json")
        #expect(file.sink.map { "\($0)" } == "file:/var/lib/telemetry.jsonl")
        #expect(file.apiKeyFile == "/etc/trickle/key")
        #expect(file.spoolDirectory == "/var/spool/trickle")
        #expect(file.spool == true)
        #expect(file.spoolMaximumBytes == 2_097_152)
        #expect(file.listen == "127.0.0.1:7999")
        #expect(file.streamTokenFile == "/etc/trickle/stream")
        #expect(file.waitForChannel == 12.5)
        #expect(file.reconnectGrace == 45)
        #expect(file.kafkaTopic == "telemetry")
        #expect(file.kafkaCompression == "zstd")
        #expect(Dictionary(uniqueKeysWithValues: (file.kafkaOptions ?? []).map { ($0.0, $0.1) }) == ["ssl.ca.location": "/etc/ssl/ca.pem", "acks": "all"])
        #expect(file.caFile == "/etc/trickle/ca.pem" && file.caOnly == true)
        #expect(file.clientCertificateFile == "/etc/trickle/client.pem" && file.clientKeyFile == "/etc/trickle/client.key")
        try #require(file.subscriptions.count == 3)
        #expect(file.subscriptions.map(\.eventsURL.channelName) == ["a-events", "b-events", "c-events"])
        #expect(file.subscriptions[0].sessionID == "sess-a")
        #expect(file.subscriptions[0].start == .seq(7))
        #expect(file.subscriptions[1].start == .next)
        #expect(file.subscriptions[2].start == .latest)
        #expect(file.subscriptions.allSatisfy { $0.origin == .config })
        // An absent field stays absent (the command line's value or the default applies), never a made-up value.
        let empty = try ClientConfigurationFile(data: Data("{}".utf8), path: "client.json")
        #expect(empty.sink == nil && empty.spool == nil && empty.listen == nil && empty.kafkaOptions == nil && empty.subscriptions.isEmpty)
    }

    @Test("a bad configuration file is refused with the field and the reason", arguments: [
        (#"[1]"#, "must be a JSON object"),
        (#"{"sink":"null""#, "not valid JSON"),
        (#"{"sinks":"null"}"#, "sinks: unknown field"),
        (#"{"sink":"bogus"}"#, "sink: sink must be log, null"),
        (#"{"sink":5}"#, "sink: must be a non-empty string"),
        (#"{"ca_only":"yes"}"#, "ca_only: must be true or false"),
        (#"{"ca_file":""}"#, "ca_file: must be a non-empty string"),
        (#"{"listen":"nowhere"}"#, "listen: must be HOST:PORT"),
        (#"{"spool":"yes"}"#, "spool: must be true or false"),
        (#"{"spool_max_bytes":12}"#, "spool_max_bytes: must be a whole number of bytes, at least 1048576"),
        (#"{"spool_max_bytes":1e300}"#, "spool_max_bytes: must be a whole number"),
        (#"{"wait_for_channel":-1}"#, "wait_for_channel: must be a number of seconds"),
        (#"{"reconnect_grace":true}"#, "reconnect_grace: must be a number of seconds"),
        (#"{"subscriptions":{"events_url":"http://h/a"}}"#, "subscriptions: must be an array"),
        (#"{"subscriptions":["http://h/a"]}"#, "subscriptions[0] must be a JSON object"),
        (#"{"subscriptions":[{"url":"http://h/a"}]}"#, "subscriptions[0].url: unknown field"),
        (#"{"subscriptions":[{"session_id":"a"}]}"#, "subscriptions[0].events_url: missing"),
        (#"{"subscriptions":[{"events_url":"ftp://h/a"}]}"#, "subscriptions[0].events_url: channel URL must be http(s)://"),
        (#"{"subscriptions":[{"events_url":"http://h/a","start":"soon"}]}"#, "subscriptions[0].start: must be latest, next or a seq number"),
        (#"{"subscriptions":[{"events_url":"http://h/a","start":-3}]}"#, "subscriptions[0].start: must be latest, next or a seq number"),
        (#"{"subscriptions":[{"events_url":"http://h/a","start":true}]}"#, "subscriptions[0].start: must be"),
        (#"{"subscriptions":[{"events_url":"http://h/a","session_id":""}]}"#, "subscriptions[0].session_id: session_id must be 1 to 128"),
        (#"{"subscriptions":[{"events_url":"http://h/a"},{"events_url":"http://h/a?jwt=x"}]}"#, "subscriptions[1].events_url: the same channel as subscriptions[0]"),
    ])
    func badFile(text: String, message: String) throws {
        #expect {
            try ClientConfigurationFile(data: Data(text.utf8), path: "client.json")
        } throws: { error in
            "\(error)".hasPrefix("configuration file client.json: ") && "\(error)".contains(message)
        }
    }

    @Test("a missing file names itself")
    func missingFile() {
        #expect {
            try ClientConfigurationFile(path: "/nonexistent/client.json")
        } throws: { error in
            "\(error)".contains("/nonexistent/client.json: cannot read the file")
        }
    }
}
