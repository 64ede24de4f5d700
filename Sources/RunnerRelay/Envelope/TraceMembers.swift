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

/// The `traceparent` / `tracestate` members of one event object (or an envelope's `data`), checked: which of
/// them are dropped as malformed, and which context is added when the object has no valid one of its own.
struct TraceMembers {
    private var dropped: Set<Range<Int>> = []  // key ranges of members to leave out
    private(set) var added: TraceContextHeaders?
    private(set) var invalidValues = 0

    /// Whether the object's bytes change (a member is dropped or a context added).
    var changes: Bool { !self.dropped.isEmpty || self.added != nil }

    init(_ members: [TelemetryEnvelope.Member], in buffer: ByteBuffer, given: TraceContextHeaders?) {
        let parent = members.last { Self.key($0, in: buffer, is: "traceparent") }
        let state = members.last { Self.key($0, in: buffer, is: "tracestate") }
        guard parent != nil || state != nil else {
            self.added = given
            return
        }
        let parentText = parent.flatMap { Self.string($0, in: buffer) }
        let stateText = state.flatMap { Self.string($0, in: buffer) }
        // A member that is not a string (or a duplicate key) counts as a malformed value.
        var validation = TraceContextHeaders.validate(traceparent: parentText, tracestate: stateText)
        if parent != nil, parentText == nil { validation = .init(context: nil, invalidValues: 1 + (state == nil ? 0 : 1)) }
        if state != nil, stateText == nil { validation.invalidValues += validation.context == nil ? 0 : 1 }
        let duplicates = members.filter { Self.key($0, in: buffer, is: "traceparent") || Self.key($0, in: buffer, is: "tracestate") }
        self.invalidValues = validation.invalidValues + max(0, duplicates.count - (parent == nil ? 0 : 1) - (state == nil ? 0 : 1))
        for member in duplicates where member.key != parent?.key && member.key != state?.key {
            self.dropped.insert(member.key)
        }
        guard let context = validation.context else {
            // No usable context of its own: both members go, and the one the request carried (if any) is added.
            if let parent { self.dropped.insert(parent.key) }
            if let state { self.dropped.insert(state.key) }
            self.added = given
            return
        }
        if let state, context.tracestate == nil { self.dropped.insert(state.key) }
    }

    func drops(_ member: TelemetryEnvelope.Member) -> Bool { self.dropped.contains(member.key) }

    /// Writes `,"traceparent":"…"[,"tracestate":"…"]` for an added context.
    func writeAdded(into buffer: inout ByteBuffer, leadingComma: Bool = true) {
        guard let added else { return }
        if leadingComma { buffer.writeString(",") }
        buffer.writeString(#""traceparent":"#)
        buffer.writeJSONString(added.traceparent)
        if let tracestate = added.tracestate {
            buffer.writeString(#","tracestate":"#)
            buffer.writeJSONString(tracestate)
        }
    }

    private static func key(_ member: TelemetryEnvelope.Member, in buffer: ByteBuffer, is name: StaticString) -> Bool {
        guard member.key.count == name.utf8CodeUnitCount else { return false }
        return buffer.withUnsafeReadableBytes { bytes in
            UnsafeRawBufferPointer(rebasing: bytes[member.key]).elementsEqual(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        }
    }

    /// The member's value as a string, or `nil` when it is not one.
    private static func string(_ member: TelemetryEnvelope.Member, in buffer: ByteBuffer) -> String? {
        guard member.kind == .string, member.range.count >= 2 else { return nil }
        let literal = buffer.getSlice(at: buffer.readerIndex + member.range.lowerBound, length: member.range.count)!
        let hasEscape = literal.readableBytesView.contains(UInt8(ascii: "\\"))
        guard hasEscape else {
            return literal.getString(at: literal.readerIndex + 1, length: literal.readableBytes - 2)
        }
        // Escapes are rare in these values (a valid traceparent has none); decode them properly.
        return (try? JSONValue.parse(literal.readableBytesView))?.stringValue
    }
}
