#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import TrickleProtocol
import TrickleRelaySupport

/// Relayed envelopes as OTLP log records in OTLP/HTTP's JSON encoding
/// (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>): one `ExportLogsServiceRequest` per
/// batch, one `LogRecord` per envelope.
///
/// A record's `body` is the envelope's text, byte for byte (a JSON string of the raw bytes: a receiver that
/// decodes it gets exactly what the runner sent); its attributes are `data.type`, `session_id`,
/// `connection_id` and `event.id`, and, when the envelope carries a W3C trace context, `traceparent` and
/// `tracestate` — the record's `traceId`, `spanId` and `flags` are set from it too, so a backend correlates the
/// event with the trace it belongs to. `timeUnixNano` is the envelope's `timestamp` (Unix ms).
enum OTLPLogEncoding {
    /// `SEVERITY_NUMBER_INFO`.
    static let severityNumber = 9

    /// The record for one envelope, or `nil` when it has no string `id` or no object `data`.
    static func record(for envelope: ByteBuffer, observedNanos: UInt64) -> (body: ByteBuffer, fields: EnvelopeFields)? {
        let fields = EnvelopeFields(including: envelope)
        guard let id = fields.id, envelope.withUnsafeReadableBytes({ EnvelopeFields.dataRange(in: $0) }) != nil else { return nil }
        var body = ByteBufferAllocator().buffer(capacity: envelope.readableBytes + 512)
        body.writeString("{")
        if let nanos = fields.timestamp.flatMap(Self.nanoseconds(fromMillisecondsText:)) {
            body.writeString(#""timeUnixNano":"\#(nanos)","#)
        }
        body.writeString(#""observedTimeUnixNano":"\#(observedNanos)","severityNumber":\#(Self.severityNumber),"severityText":"INFO","body":{"stringValue":"#)
        Self.writeJSONString(bytesOf: envelope, into: &body)
        body.writeString(#"},"attributes":["#)
        var first = true
        func attribute(_ key: String, _ value: String?) {
            guard let value else { return }
            if !first { body.writeString(",") }
            first = false
            body.writeString(#"{"key":"\#(key)","value":{"stringValue":"#)
            // Values are the JSON string contents as they stand in the envelope (escapes included): valid
            // inside a JSON string literal as they are.
            body.writeString("\"")
            body.writeString(value)
            body.writeString("\"}}")
        }
        attribute("data.type", fields.type)
        attribute("session_id", fields.sessionID)
        attribute("connection_id", fields.connectionID)
        attribute("event.id", id)
        attribute("traceparent", fields.traceparent)
        attribute("tracestate", fields.tracestate)
        body.writeString("]")
        if let parent = fields.traceparent, let parts = Self.traceparentParts(parent) {
            body.writeString(#","traceId":"\#(parts.traceID)","spanId":"\#(parts.spanID)","flags":\#(parts.flags)"#)
        }
        body.writeString("}")
        return (body, fields)
    }

    /// The request body for `records` (each one from ``record(for:observedNanos:)``).
    static func request(records: some Collection<ByteBuffer>, serviceName: String, resourceAttributes: [(String, String)]) -> ByteBuffer {
        var body = ByteBufferAllocator().buffer(capacity: records.reduce(512) { $0 + $1.readableBytes + 1 })
        body.writeString(#"{"resourceLogs":[{"resource":{"attributes":["#)
        var attributes = [("service.name", serviceName)]
        attributes.append(contentsOf: resourceAttributes.filter { $0.0 != "service.name" })
        for (index, (key, value)) in attributes.enumerated() {
            if index > 0 { body.writeString(",") }
            body.writeString(#"{"key":"#)
            Self.writeJSONString(bytesOf: ByteBuffer(string: key), into: &body)
            body.writeString(#","value":{"stringValue":"#)
            Self.writeJSONString(bytesOf: ByteBuffer(string: value), into: &body)
            body.writeString("}}")
        }
        body.writeString(#"]},"scopeLogs":[{"scope":{"name":"trickle-relay"},"logRecords":["#)
        for (index, record) in records.enumerated() {
            if index > 0 { body.writeString(",") }
            body.writeImmutableBuffer(record)
        }
        body.writeString("]}]}]}")
        return body
    }

    /// `partialSuccess.rejectedLogRecords` of a response body, when the receiver rejected some records.
    static func rejectedRecords(inResponse body: String) -> Int? {
        guard let partial = (try? JSONValue.parse(body.utf8))?.objectValue?["partialSuccess"]?.objectValue else { return nil }
        // int64 in OTLP JSON: a string or a number.
        switch partial["rejectedLogRecords"] {
        case .string(let count): return Int(count)
        case .integer(let count): return Int(exactly: count)
        case .double(let count): return Int(exactly: count)
        default: return nil
        }
    }

    /// Unix ms as text (digits only) → ns, when it fits in a `UInt64`.
    static func nanoseconds(fromMillisecondsText text: String) -> UInt64? {
        guard !text.isEmpty, text.utf8.count <= 13, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let millis = UInt64(text) else { return nil }
        let (nanos, overflow) = millis.multipliedReportingOverflow(by: 1_000_000)
        return overflow ? nil : nanos
    }

    /// The ids of a (validated on the runner, but checked again here) `traceparent`.
    static func traceparentParts(_ value: String) -> (traceID: Substring, spanID: Substring, flags: Int)? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            parts[1...].allSatisfy({ $0.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) } }),
            let flags = Int(parts[3], radix: 16)
        else { return nil }
        return (parts[1], parts[2], flags)
    }

    /// Writes `bytes` as a JSON string literal (the bytes exactly, once decoded).
    static func writeJSONString(bytesOf bytes: ByteBuffer, into body: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { body.writeJSONStringLiteral($0) }
    }
}
