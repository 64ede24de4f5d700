import Foundation
import NIOCore
import Testing
@testable import RunnerRelay

@Suite("TelemetryEnvelope")
struct TelemetryEnvelopeTests {
    let identity = SessionIdentity(sessionID: "sess-1", connectionID: "conn-9")

    private func envelope(_ event: String, id: String = "00000000-0000-4000-8000-000000000001") throws -> String {
        String(buffer: try TelemetryEnvelope.make(event: ByteBuffer(string: event), identity: self.identity, timestampMillis: 1_763_769_600_123, id: id))
    }

    @Test("a bare event is stamped once: id, stream_trace, ms timestamp string, data with session fields")
    func stampsBareEvent() throws {
        let result = try self.envelope(#"{"type":"pipeline_loaded","load_duration_ms":1.0e3,"pipeline_ids":["a"]}"#)
        #expect(
            result
                == #"{"id":"00000000-0000-4000-8000-000000000001","type":"stream_trace","timestamp":"1763769600123","data":{"type":"pipeline_loaded","client_source":"scope","timestamp":"1763769600123","session_id":"sess-1","connection_id":"conn-9","load_duration_ms":1.0e3,"pipeline_ids":["a"]}}"#
        )
        let parsed = try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any]
        #expect((parsed?["timestamp"] as? String) == "1763769600123")
    }

    @Test("fields the event already has are not overridden")
    func keepsEventFields() throws {
        let result = try self.envelope(#"{"session_id":"own","type":"error","client_source":"other","error":{"message":"x"}}"#)
        #expect(result.contains(#""session_id":"own""#))
        #expect(result.contains(#""client_source":"other""#))
        #expect(!result.contains("sess-1"))
        #expect(result.contains(#""connection_id":"conn-9""#))
    }

    @Test("a full envelope is kept byte for byte, less whitespace outside strings")
    func keepsEnvelope() throws {
        let pretty = """
            {
              "data": {"type": "stream_heartbeat", "fps_in": 29.970, "note": "a  b\\u00e9"},
              "type": "stream_trace",
              "id": "upstream-id",
              "timestamp": "1700000000000"
            }
            """
        #expect(
            try self.envelope(pretty)
                == #"{"data":{"type":"stream_heartbeat","fps_in":29.970,"note":"a  b\u00e9"},"type":"stream_trace","id":"upstream-id","timestamp":"1700000000000"}"#
        )
    }

    @Test("not an object, no type, or invalid JSON is refused", arguments: ["[1]", #"{"no_type":1}"#, #"{"type":5}"#, "{bad", "NaN"])
    func refuses(event: String) {
        #expect(throws: TelemetryEnvelope.Failure.self) { try self.envelope(event) }
    }

    @Test("session ids are JSON-escaped")
    func escapesIdentity() throws {
        let identity = SessionIdentity(sessionID: "we\"ird\\id\n", connectionID: nil)
        let result = String(buffer: try TelemetryEnvelope.make(event: ByteBuffer(string: #"{"type":"x"}"#), identity: identity, timestampMillis: 1))
        let parsed = try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any]
        let data = parsed?["data"] as? [String: Any]
        #expect((data?["session_id"] as? String) == "we\"ird\\id\n")
        #expect(data?["connection_id"] == nil)
        let id = try #require(parsed?["id"] as? String)
        #expect(UUID(uuidString: id) != nil && id == id.lowercased())
    }

    @Test("ids are lowercase UUID v4 (version and variant bits set), and distinct")
    func ids() {
        let ids = (0..<1_000).map { _ in TelemetryEnvelope.makeID() }
        #expect(Set(ids).count == 1_000)
        for id in ids {
            let characters = Array(id)
            #expect(UUID(uuidString: id) != nil && id == id.lowercased() && id.count == 36)
            #expect(characters[14] == "4" && "89ab".contains(characters[19]), "\(id)")
        }
    }
}
