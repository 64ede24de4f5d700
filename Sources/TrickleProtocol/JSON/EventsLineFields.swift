public import NIOCore
import TrickleRelaySupport

/// What both ends route an events-channel line on — its top-level `type` and its `event` member — found in the
/// same pass that validates the line, without decoding it.
public struct EventsLineFields: Sendable {
    /// The kind of the top-level value (only `.object` lines carry fields).
    public var kind: JSONScanner.ValueKind
    /// The raw bytes of a string `type` (quotes included), relative to the line's reader index.
    public var typeRange: Range<Int>?
    /// The `event` member, relative to the line's reader index.
    public var event: JSONScanner.Member?

    /// Scans one line (without its newline).
    public static func scan(_ line: ByteBuffer) -> Result<Self, JSONSyntaxError> {
        var type: Range<Int>?
        var event: JSONScanner.Member?
        return line.withUnsafeReadableBytes { bytes in
            do throws(JSONSyntaxError) {
                let kind = try JSONScanner.scan(bytes) { key, member in
                    if RawBytes.equal(key, "type"), member.kind == .string { type = member.range }
                    if RawBytes.equal(key, "event") { event = member }
                }
                return .success(Self(kind: kind, typeRange: type, event: event))
            } catch {
                return .failure(error)
            }
        }
    }

    /// Whether the `type` is exactly `name` (compared on the raw bytes): the routing test, on every line.
    public func type(is name: StaticString, in line: ByteBuffer) -> Bool {
        guard let typeRange, typeRange.count == name.utf8CodeUnitCount + 2 else { return false }
        return line.withUnsafeReadableBytes { bytes in
            RawBytes.equal(UnsafeRawBufferPointer(rebasing: bytes[(typeRange.lowerBound + 1)..<(typeRange.upperBound - 1)]), name)
        }
    }

    /// The `type` text (escapes as written), if there is a string `type`.
    public func type(in line: ByteBuffer) -> String? {
        self.typeRange.flatMap { line.getString(at: line.readerIndex + $0.lowerBound + 1, length: $0.count - 2) }
    }

    /// The bytes of an object `event`, if there is one.
    public func eventObject(in line: ByteBuffer) -> ByteBuffer? {
        guard let event, event.kind == .object else { return nil }
        return line.getSlice(at: line.readerIndex + event.range.lowerBound, length: event.range.count)
    }
}
