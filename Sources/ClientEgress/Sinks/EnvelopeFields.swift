public import NIOCore
import TrickleProtocol

/// The few envelope fields a sink may route or log on, read without decoding the envelope
/// (`id`, `data.type`, `data.session_id`). Values are the JSON string contents, escapes as written.
public struct EnvelopeFields: Sendable, Hashable {
    public var id: String?
    public var type: String?
    public var sessionID: String?

    /// Reads the fields of one envelope; missing or non-string fields are `nil`. The envelope is expected to be
    /// valid JSON (every envelope a sink gets was validated by the dispatcher): it is skimmed, not re-validated.
    public init(_ envelope: ByteBuffer) {
        var id: String?
        var type: String?
        var session: String?
        envelope.withUnsafeReadableBytes { bytes in
            id = Self.string("id", in: bytes)
            guard let data = JSONSkim.member("data", in: bytes), bytes[data.lowerBound] == UInt8(ascii: "{") else { return }
            let object = UnsafeRawBufferPointer(rebasing: bytes[data])
            type = Self.string("type", in: object)
            session = Self.string("session_id", in: object)
        }
        self.id = id
        self.type = type
        self.sessionID = session
    }

    /// The bytes of the top-level string member `name` (contents, escapes as written), for an envelope known to
    /// be valid: no copy.
    public static func stringBytes(_ name: StaticString, of envelope: ByteBuffer) -> ByteBuffer? {
        let range: Range<Int>? = envelope.withUnsafeReadableBytes { bytes in
            guard let value = JSONSkim.member(name, in: bytes), value.count >= 2, bytes[value.lowerBound] == UInt8(ascii: "\"") else { return nil }
            return (value.lowerBound + 1)..<(value.upperBound - 1)
        }
        return range.map { envelope.getSlice(at: envelope.readerIndex + $0.lowerBound, length: $0.count)! }
    }

    private static func string(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> String? {
        guard let value = JSONSkim.member(name, in: bytes), value.count >= 2, bytes[value.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return Self.stringContent(bytes, value)
    }

    /// The contents of `data.type` (escapes as written) as a slice of the envelope, for an envelope already
    /// known to be valid JSON: a skim, no validation and no copy (what per-type counting at 1 GB/s needs).
    public static func dataType(of envelope: ByteBuffer) -> ByteBuffer? {
        let range: Range<Int>? = envelope.withUnsafeReadableBytes { bytes in
            guard let data = JSONSkim.member("data", in: bytes), bytes[data.lowerBound] == UInt8(ascii: "{") else { return nil }
            let object = UnsafeRawBufferPointer(rebasing: bytes[data])
            guard let type = JSONSkim.member("type", in: object), object[type.lowerBound] == UInt8(ascii: "\""), type.count >= 2 else {
                return nil
            }
            return (data.lowerBound + type.lowerBound + 1)..<(data.lowerBound + type.upperBound - 1)
        }
        return range.map { envelope.getSlice(at: envelope.readerIndex + $0.lowerBound, length: $0.count)! }
    }

    /// The envelope's `timestamp` (Unix ms, a decimal string) as a number, if present and numeric.
    public static func timestamp(of envelope: ByteBuffer) -> Int64? {
        envelope.withUnsafeReadableBytes { bytes -> Int64? in
            guard let value = JSONSkim.member("timestamp", in: bytes), value.count >= 3, value.count <= 21,
                bytes[value.lowerBound] == UInt8(ascii: "\"")
            else { return nil }
            var number: Int64 = 0
            for byte in bytes[(value.lowerBound + 1)..<(value.upperBound - 1)] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                number = number &* 10 &+ Int64(byte - UInt8(ascii: "0"))
            }
            return number
        }
    }

    private static func stringContent(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)]), as: UTF8.self)
    }
}
