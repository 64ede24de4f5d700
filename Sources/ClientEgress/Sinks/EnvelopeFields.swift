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
            JSONSkim.stringContents("timestamp", in: bytes).flatMap { Self.number(UnsafeRawBufferPointer(rebasing: bytes[$0])) }
        }
    }

    /// `id` (string contents), `timestamp` (a number) and `data.type` (string contents) of an envelope known to be
    /// valid, in one walk of its members that stops once all three were met (a long `data` that comes last is
    /// never skimmed): what a replay summary reads of every envelope. Each is what ``stringBytes(_:of:)``,
    /// ``timestamp(of:)`` and ``dataType(of:)`` return (the first member of each name counts).
    public static func idTimestampAndDataType(of envelope: ByteBuffer) -> (id: ByteBuffer?, timestamp: Int64?, dataType: ByteBuffer?) {
        let found = envelope.withUnsafeReadableBytes { Self.idTimestampAndDataType(in: $0) }
        return (found.id.map { Self.slice(envelope, $0) }, found.timestamp, found.dataType.map { Self.slice(envelope, $0) })
    }

    /// ``idTimestampAndDataType(of:)`` on the envelope's bytes: where `id` and `data.type` sit (contents, escapes
    /// as written), and the timestamp — no slice, so a caller that only hashes or counts them allocates nothing.
    public static func idTimestampAndDataType(in bytes: UnsafeRawBufferPointer) -> (id: Range<Int>?, timestamp: Int64?, dataType: Range<Int>?) {
        var id: Range<Int>?
        var timestamp: Int64?
        var dataType: Range<Int>?
        var met = (id: false, timestamp: false, data: false)
        JSONSkim.forEachMember(in: bytes) { key, start in
            if !met.id, Self.key(key, is: "id") {
                met.id = true
                id = JSONSkim.stringContents(at: start, in: bytes)
            } else if !met.timestamp, Self.key(key, is: "timestamp") {
                met.timestamp = true
                timestamp = JSONSkim.stringContents(at: start, in: bytes).flatMap { Self.number(UnsafeRawBufferPointer(rebasing: bytes[$0])) }
            } else if !met.data, Self.key(key, is: "data") {
                met.data = true
                if bytes[start] == UInt8(ascii: "{") {
                    let data = UnsafeRawBufferPointer(rebasing: bytes[start...])
                    JSONSkim.forEachMember(in: data) { key, typeStart in
                        guard Self.key(key, is: "type") else { return true }
                        dataType = JSONSkim.stringContents(at: typeStart, in: data).map { (start + $0.lowerBound)..<(start + $0.upperBound) }
                        return false
                    }
                }
            }
            return !(met.id && met.timestamp && met.data)
        }
        return (id, timestamp, dataType)
    }

    /// Whether a short key is `name`: a byte loop (a `memcmp` call costs more than these few bytes).
    @inline(__always)
    private static func key(_ key: UnsafeRawBufferPointer, is name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let literal = name.utf8Start
        for offset in 0..<key.count where key[offset] != literal[offset] { return false }
        return true
    }

    /// A decimal timestamp's digits (1 to 18: no overflow) as a number.
    private static func number(_ digits: UnsafeRawBufferPointer) -> Int64? {
        guard (1...18).contains(digits.count) else { return nil }
        var number: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            number = number &* 10 &+ Int64(byte - UInt8(ascii: "0"))
        }
        return number
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
