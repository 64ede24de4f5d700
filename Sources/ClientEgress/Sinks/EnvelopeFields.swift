public import NIOCore
import TrickleProtocol

/// The few envelope fields a sink may route or log on, read without decoding the envelope
/// (`id`, `data.type`, `data.session_id`). Values are the JSON string contents, escapes as written.
public struct EnvelopeFields: Sendable, Hashable {
    public var id: String?
    public var type: String?
    public var sessionID: String?

    /// Reads the fields of one envelope; missing or non-string fields are `nil`.
    public init(_ envelope: ByteBuffer) {
        var id: String?
        var dataRange: Range<Int>?
        envelope.withUnsafeReadableBytes { bytes in
            _ = try? JSONScanner.scan(bytes) { key, member in
                if key.elementsEqual("id".utf8), member.kind == .string { id = Self.stringContent(bytes, member.range) }
                if key.elementsEqual("data".utf8), member.kind == .object { dataRange = member.range }
            }
        }
        self.id = id
        guard let dataRange else { return }
        var type: String?
        var session: String?
        envelope.withUnsafeReadableBytes { bytes in
            let data = UnsafeRawBufferPointer(rebasing: bytes[dataRange])
            _ = try? JSONScanner.scan(data) { key, member in
                guard member.kind == .string else { return }
                if key.elementsEqual("type".utf8) { type = Self.stringContent(data, member.range) }
                if key.elementsEqual("session_id".utf8) { session = Self.stringContent(data, member.range) }
            }
        }
        self.type = type
        self.sessionID = session
    }

    /// The envelope's `timestamp` (Unix ms, a decimal string) as a number, if present and numeric.
    public static func timestamp(of envelope: ByteBuffer) -> Int64? {
        var value: Int64?
        envelope.withUnsafeReadableBytes { bytes in
            _ = try? JSONScanner.scan(bytes) { key, member in
                guard key.elementsEqual("timestamp".utf8), member.kind == .string else { return }
                value = Int64(Self.stringContent(bytes, member.range))
            }
        }
        return value
    }

    private static func stringContent(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)]), as: UTF8.self)
    }
}
