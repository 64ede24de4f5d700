public import NIOCore
import TrickleProtocol
import TrickleRelaySupport

/// The few envelope fields a sink may route or log on, read without decoding the envelope
/// (`id`, `data.type`, `data.session_id`). Values are the JSON string contents, escapes as written.
public struct EnvelopeFields: Sendable, Hashable {
    public var id: String?
    public var type: String?
    public var sessionID: String?
    /// `timestamp`, `data.connection_id`, `data.traceparent` and `data.tracestate`: read only by
    /// ``init(including:)`` (a sink that correlates with traces).
    public var timestamp: String?
    public var connectionID: String?
    public var traceparent: String?
    public var tracestate: String?

    /// Reads every field above, the trace context included.
    public init(including envelope: ByteBuffer) {
        self.init(envelope)
        envelope.withUnsafeReadableBytes { bytes in
            func string(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> String? {
                JSONSkim.stringContents(name, in: bytes).map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self) }
            }
            self.timestamp = string("timestamp", in: bytes)
            guard let data = Self.dataRange(in: bytes) else { return }
            let object = UnsafeRawBufferPointer(rebasing: bytes[data])
            self.connectionID = string("connection_id", in: object)
            self.traceparent = string("traceparent", in: object)
            self.tracestate = string("tracestate", in: object)
        }
    }

    /// Reads the fields of one envelope; missing or non-string fields are `nil`. The envelope is expected to be
    /// valid JSON (every envelope a sink gets was validated by the dispatcher): it is skimmed, not re-validated.
    public init(_ envelope: ByteBuffer) {
        var id: String?
        var type: String?
        var session: String?
        envelope.withUnsafeReadableBytes { bytes in
            func string(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> String? {
                JSONSkim.stringContents(name, in: bytes).map { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[$0]), as: UTF8.self) }
            }
            id = string("id", in: bytes)
            guard let data = Self.dataRange(in: bytes) else { return }
            let object = UnsafeRawBufferPointer(rebasing: bytes[data])
            type = string("type", in: object)
            session = string("session_id", in: object)
        }
        self.id = id
        self.type = type
        self.sessionID = session
    }

    /// The bytes of the top-level string member `name` (contents, escapes as written), for an envelope known to
    /// be valid: no copy.
    public static func stringBytes(_ name: StaticString, of envelope: ByteBuffer) -> ByteBuffer? {
        let range = envelope.withUnsafeReadableBytes { JSONSkim.stringContents(name, in: $0) }
        return range.map { Self.slice(envelope, $0) }
    }

    /// The contents of `data.type` (escapes as written) as a slice of the envelope, for an envelope already
    /// known to be valid JSON: a skim, no validation and no copy (what per-type counting at 1 GB/s needs).
    public static func dataType(of envelope: ByteBuffer) -> ByteBuffer? {
        let range: Range<Int>? = envelope.withUnsafeReadableBytes { bytes in
            guard let data = Self.dataRange(in: bytes),
                let type = JSONSkim.stringContents("type", in: UnsafeRawBufferPointer(rebasing: bytes[data]))
            else { return nil }
            return (data.lowerBound + type.lowerBound)..<(data.lowerBound + type.upperBound)
        }
        return range.map { Self.slice(envelope, $0) }
    }

    /// The envelope's `timestamp` (Unix ms, a decimal string) as a number, if present and numeric.
    public static func timestamp(of envelope: ByteBuffer) -> Int64? {
        envelope.withUnsafeReadableBytes { bytes -> Int64? in
            guard let digits = JSONSkim.stringContents("timestamp", in: bytes), (1...18).contains(digits.count) else { return nil }  // < 10^18: no overflow
            var number: Int64 = 0
            for byte in bytes[digits] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                number = number &* 10 &+ Int64(byte - UInt8(ascii: "0"))
            }
            return number
        }
    }

    /// The range of the `data` object.
    /// From the `data` object's `{` to the end of the envelope: its members are found by a skim that stops at
    /// the one asked for (or at `data`'s closing brace), so a long `data` is never skimmed to its end.
    static func dataRange(in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let start = JSONSkim.valueStart("data", in: bytes), bytes[start] == UInt8(ascii: "{") else { return nil }
        return start..<bytes.count
    }

    private static func slice(_ envelope: ByteBuffer, _ range: Range<Int>) -> ByteBuffer {
        envelope.getSlice(at: envelope.readerIndex + range.lowerBound, length: range.count)!  // within the envelope
    }
}
