#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
public import NIOCore
import TrickleProtocol
import TrickleRelaySupport

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
/// The key and counter behind ``TelemetryEnvelope/makeID()``.
private let idKey: (UInt64, UInt64) = {
    var generator = SystemRandomNumberGenerator()
    return (generator.next(), generator.next())
}()
private let idCounter = Atomic<UInt64>(0)

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
        var invalid = 0
        return try self.make(event: event, identity: identity, timestampMillis: timestampMillis, id: id, traceContext: nil, invalidTraceValues: &invalid)
    }

    /// Returns the envelope for `event`, carrying a W3C trace context in its `data` (`traceparent`,
    /// `tracestate`).
    ///
    /// The event's own `traceparent`/`tracestate` members (a bare event's, or a full envelope's `data`'s) are
    /// checked with ``TraceContextHeaders/validate(traceparent:tracestate:)``: valid ones stay byte for byte,
    /// malformed ones are removed (never forwarded) and counted in `invalidTraceValues`. When the event has no
    /// valid `traceparent` of its own, `traceContext` (from the ingest request's headers, already checked) is
    /// added to `data`.
    public static func make(
        event: ByteBuffer,
        identity: SessionIdentity,
        timestampMillis: Int64,
        id: String? = nil,
        traceContext: TraceContextHeaders?,
        invalidTraceValues: inout Int
    ) throws(Failure) -> ByteBuffer {
        let minified = JSONMinifier.minify(event)
        // One validating scan gives the members (key and value ranges) too.
        var members: [Member] = []
        let scanned: Result<JSONScanner.ValueKind, JSONSyntaxError> = minified.withUnsafeReadableBytes { bytes in
            let base = bytes.baseAddress
            do throws(JSONSyntaxError) {
                return .success(
                    try JSONScanner.scan(bytes) { key, member in
                        let offset = key.baseAddress.flatMap { pointer in base.map { pointer - $0 } } ?? 0
                        members.append((offset..<offset + key.count, member.range, member.kind))
                    }
                )
            } catch {
                return .failure(error)
            }
        }
        switch scanned {
        case .success(.object): break
        case .success(let other): throw Failure(reason: "a telemetry event must be a JSON object, got \(other)")
        case .failure(let error): throw Failure(reason: "not valid JSON: \(error)")
        }
        func bytesEqual(_ range: Range<Int>, _ text: StaticString) -> Bool {
            guard range.count == text.utf8CodeUnitCount else { return false }
            return minified.withUnsafeReadableBytes { bytes in
                UnsafeRawBufferPointer(rebasing: bytes[range]).elementsEqual(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
            }
        }
        func member(_ name: StaticString) -> Member? {
            members.first { bytesEqual($0.key, name) }
        }
        func raw(_ range: Range<Int>) -> ByteBuffer {
            minified.getSlice(at: minified.readerIndex + range.lowerBound, length: range.count)!  // within the buffer
        }
        if let type = member("type"), type.kind == .string, bytesEqual(type.range, "\"stream_trace\""),
            member("id")?.kind == .string, member("timestamp") != nil, let data = member("data"), data.kind == .object
        {
            // Already an envelope: stamped once, upstream. Only its trace context members may change.
            return Self.checkingTraceContext(ofEnvelope: minified, data: data.range, given: traceContext, invalid: &invalidTraceValues)
        }
        guard let type = member("type"), type.kind == .string else {
            throw Failure(reason: "a telemetry event needs a string \"type\"")
        }
        let id = id ?? Self.makeID()
        let timestamp = String(timestampMillis)
        var envelope = ByteBufferAllocator().buffer(capacity: minified.readableBytes + 256)
        envelope.writeString(#"{"id":"#)
        envelope.writeJSONString(id)  // (an id of ours needs no escaping: the fast path)
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
        // Most events carry no trace context: then nothing is checked per member (the drain's cost per event).
        let carriesTrace = members.contains { bytesEqual($0.key, "traceparent") || bytesEqual($0.key, "tracestate") }
        let trace = carriesTrace || traceContext != nil ? TraceMembers(members, in: minified, given: traceContext) : nil
        invalidTraceValues += trace?.invalidValues ?? 0
        for member in members where !bytesEqual(member.key, "type") && !(carriesTrace && trace!.drops(member)) {
            envelope.writeString(",\"")
            envelope.writeImmutableBuffer(raw(member.key))
            envelope.writeString("\":")
            envelope.writeImmutableBuffer(raw(member.range))
        }
        trace?.writeAdded(into: &envelope)
        envelope.writeString("}}")
        return envelope
    }

    typealias Member = (key: Range<Int>, range: Range<Int>, kind: JSONScanner.ValueKind)

    /// A full envelope whose `data` (at `dataRange` of `envelope`) has its trace context members checked: the
    /// same bytes when there is nothing to drop or add, else the envelope with `data` rebuilt.
    private static func checkingTraceContext(
        ofEnvelope envelope: ByteBuffer,
        data dataRange: Range<Int>,
        given: TraceContextHeaders?,
        invalid: inout Int
    ) -> ByteBuffer {
        var members: [Member] = []
        envelope.withUnsafeReadableBytes { bytes in
            let data = UnsafeRawBufferPointer(rebasing: bytes[dataRange])
            let base = data.baseAddress
            _ = try? JSONScanner.scan(data) { key, member in
                let offset = key.baseAddress.flatMap { pointer in base.map { pointer - $0 } } ?? 0
                members.append((dataRange.lowerBound + offset..<dataRange.lowerBound + offset + key.count, (dataRange.lowerBound + member.range.lowerBound)..<(dataRange.lowerBound + member.range.upperBound), member.kind))
            }
        }
        let trace = TraceMembers(members, in: envelope, given: given)
        invalid += trace.invalidValues
        guard trace.changes else { return envelope }
        func raw(_ range: Range<Int>) -> ByteBuffer { envelope.getSlice(at: envelope.readerIndex + range.lowerBound, length: range.count)! }
        var rebuilt = ByteBufferAllocator().buffer(capacity: envelope.readableBytes + 128)
        rebuilt.writeImmutableBuffer(raw(0..<dataRange.lowerBound))
        rebuilt.writeString("{")
        var first = true
        for member in members where !trace.drops(member) {
            if !first { rebuilt.writeString(",") }
            first = false
            rebuilt.writeString("\"")
            rebuilt.writeImmutableBuffer(raw(member.key))
            rebuilt.writeString("\":")
            rebuilt.writeImmutableBuffer(raw(member.range))
        }
        trace.writeAdded(into: &rebuilt, leadingComma: !first)
        rebuilt.writeString("}")
        rebuilt.writeImmutableBuffer(raw(dataRange.upperBound..<envelope.readableBytes))
        return rebuilt
    }

    /// A fresh envelope id: a lowercase UUID v4, like Python's `str(uuid.uuid4())`.
    ///
    /// 122 bits from a per-process random key (from `getrandom`, once) mixed with a counter by two rounds of
    /// SplitMix64: unique within the process, unpredictable without the key, and cheap. Foundation's `UUID()`
    /// opens and reads `/dev/urandom` on every call here, which was a fifth of the runner's cost per event at
    /// 100,000 events/s.
    public static func makeID() -> String {
        let n = idCounter.add(1, ordering: .relaxed).newValue
        var high = Self.mix(idKey.0 &+ n)
        var low = Self.mix(idKey.1 ^ Self.mix(n))
        high = (high & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000  // version 4
        low = (low & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000  // RFC 4122 variant
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            func put(_ value: UInt64, nibbles: Int) {
                for shift in stride(from: (nibbles - 1) * 4, through: 0, by: -4) {
                    let nibble = UInt8((value >> UInt64(shift)) & 0xF)
                    buffer[index] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
                    index += 1
                }
            }
            func dash() {
                buffer[index] = UInt8(ascii: "-")
                index += 1
            }
            put(high >> 32, nibbles: 8)
            dash()
            put((high >> 16) & 0xFFFF, nibbles: 4)
            dash()
            put(high & 0xFFFF, nibbles: 4)
            dash()
            put(low >> 48, nibbles: 4)
            dash()
            put(low & 0xFFFF_FFFF_FFFF, nibbles: 12)
            return index
        }
    }

    /// SplitMix64's finaliser: a bijection on 64 bits.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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

}

extension ByteBuffer {
    /// Writes `string` as a JSON string literal (quotes and escapes included).
    mutating func writeJSONString(_ string: String) {
        if !string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            self.writeInteger(UInt8(ascii: "\""))
            self.writeString(string)
            self.writeInteger(UInt8(ascii: "\""))
            return
        }
        var string = string
        string.withUTF8 { self.writeJSONStringLiteral(UnsafeRawBufferPointer($0)) }
    }
}
