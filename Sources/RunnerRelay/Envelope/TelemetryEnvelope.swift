import Foundation
public import NIOCore
import TrickleProtocol

/// Builds the `stream_trace` envelope, exactly once, on the runner (DESIGN.md "Wire format",
/// `trickle-protocol.md` §9):
///
/// ```
/// {"id":"<uuid v4>","type":"stream_trace","timestamp":"<unix ms>",
///  "data":{"type":"<event type>","client_source":"scope","timestamp":"<unix ms>","session_id":…,"connection_id":…,…}}
/// ```
///
/// An event that already is a full envelope (`id` string, `type` `"stream_trace"`, `timestamp`, object `data`)
/// is kept byte for byte, less insignificant whitespace. Otherwise the event's own members go into `data`
/// verbatim and in order (its `type` first), and `client_source`, `timestamp`, `session_id` and
/// `connection_id` are added only when the event lacks them.
public enum TelemetryEnvelope {
    /// Why an event could not become an envelope.
    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public var description: String { self.reason }
    }

    /// Returns the envelope for `event` (one JSON object, any whitespace).
    ///
    /// - Parameters:
    ///   - event: The event's bytes.
    ///   - identity: Session fields to add when missing.
    ///   - timestampMillis: Unix time in milliseconds of the event (taken when it was emitted).
    ///   - id: The envelope id; a fresh lowercase UUID v4 by default.
    /// - Throws: ``Failure`` when the event is not a JSON object or has no string `type`.
    public static func make(
        event: ByteBuffer,
        identity: SessionIdentity,
        timestampMillis: Int64,
        id: String? = nil
    ) throws(Failure) -> ByteBuffer {
        let id = id ?? Self.makeID()
        let minified = try Self.validatedMinified(event)
        var members: [(key: [UInt8], range: Range<Int>, kind: JSONScanner.ValueKind)] = []
        minified.withUnsafeReadableBytes { bytes in
            _ = try? JSONScanner.scan(bytes) { key, member in
                members.append((Array(key), member.range, member.kind))
            }
        }
        func member(_ name: String) -> (key: [UInt8], range: Range<Int>, kind: JSONScanner.ValueKind)? {
            members.first { $0.key.elementsEqual(name.utf8) }
        }
        func raw(_ range: Range<Int>) -> ByteBuffer {
            minified.getSlice(at: minified.readerIndex + range.lowerBound, length: range.count)!  // within the buffer
        }
        if let type = member("type"), type.kind == .string, String(buffer: raw(type.range)) == "\"stream_trace\"",
            member("id")?.kind == .string, member("timestamp") != nil, member("data")?.kind == .object
        {
            return minified  // already an envelope: stamped once, upstream
        }
        guard let type = member("type"), type.kind == .string else {
            throw Failure(reason: "a telemetry event needs a string \"type\"")
        }
        let timestamp = String(timestampMillis)
        var envelope = ByteBufferAllocator().buffer(capacity: minified.readableBytes + 256)
        envelope.writeString(#"{"id":"#)
        envelope.writeJSONString(id)
        envelope.writeString(#","type":"stream_trace","timestamp":""#)
        envelope.writeString(timestamp)
        envelope.writeString(#"","data":{"type":"#)
        envelope.writeImmutableBuffer(raw(type.range))
        if member("client_source") == nil {
            envelope.writeString(#","client_source":"#)
            envelope.writeJSONString(identity.clientSource)
        }
        if member("timestamp") == nil {
            envelope.writeString(#","timestamp":""#)
            envelope.writeString(timestamp)
            envelope.writeString("\"")
        }
        if member("session_id") == nil {
            envelope.writeString(#","session_id":"#)
            envelope.writeJSONString(identity.sessionID)
        }
        if member("connection_id") == nil, let connectionID = identity.connectionID {
            envelope.writeString(#","connection_id":"#)
            envelope.writeJSONString(connectionID)
        }
        for member in members where !member.key.elementsEqual("type".utf8) {
            envelope.writeString(",\"")
            envelope.writeBytes(member.key)
            envelope.writeString("\":")
            envelope.writeImmutableBuffer(raw(member.range))
        }
        envelope.writeString("}}")
        return envelope
    }

    /// A fresh envelope id: a lowercase UUID v4, like Python's `str(uuid.uuid4())`.
    public static func makeID() -> String {
        UUID().uuidString.lowercased()
    }

    /// Whether `event` (valid JSON) is already a full envelope.
    public static func isEnvelope(_ event: ByteBuffer) -> Bool {
        var hasID = false
        var isStreamTrace = false
        var hasTimestamp = false
        var hasData = false
        event.withUnsafeReadableBytes { bytes in
            _ = try? JSONScanner.scan(bytes) { key, member in
                if key.elementsEqual("id".utf8) { hasID = member.kind == .string }
                if key.elementsEqual("timestamp".utf8) { hasTimestamp = true }
                if key.elementsEqual("data".utf8) { hasData = member.kind == .object }
                if key.elementsEqual("type".utf8) {
                    isStreamTrace = UnsafeRawBufferPointer(rebasing: bytes[member.range]).elementsEqual("\"stream_trace\"".utf8)
                }
            }
        }
        return hasID && isStreamTrace && hasTimestamp && hasData
    }

    /// Validates `event` as one JSON object and minifies it.
    static func validatedMinified(_ event: ByteBuffer) throws(Failure) -> ByteBuffer {
        switch JSONScanner.kind(of: event) {
        case .success(.object): return JSONMinifier.minify(event)
        case .success(let other): throw Failure(reason: "a telemetry event must be a JSON object, got \(other)")
        case .failure(let error): throw Failure(reason: "not valid JSON: \(error)")
        }
    }
}

extension ByteBuffer {
    /// Writes `string` as a JSON string literal (quotes and escapes included).
    mutating func writeJSONString(_ string: String) {
        self.writeInteger(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.writeString("\\\"")
            case UInt8(ascii: "\\"): self.writeString("\\\\")
            case 0x0A: self.writeString("\\n")
            case 0x0D: self.writeString("\\r")
            case 0x09: self.writeString("\\t")
            case 0..<0x20:
                let hex = String(byte, radix: 16)
                self.writeString("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
            default: self.writeInteger(byte)
            }
        }
        self.writeInteger(UInt8(ascii: "\""))
    }
}
