public import NIOCore
import TrickleRelaySupport

/// A strict (RFC 8259) JSON validator that works on raw bytes and never builds Foundation objects.
///
/// The events channel routes on a couple of top-level keys and forwards everything else verbatim, so the hot
/// path only needs to know *that* a line is valid JSON, *whether* it is an object, and *where* the values of
/// a few top-level members sit. `JSONScanner` answers exactly that in one pass over the bytes
/// (TOOLCHAIN-NOTES "JSON on the hot path": decode only what you route on).
///
/// Strictness: `NaN`, `Infinity`, leading zeros, trailing commas, comments, unescaped control characters and
/// single quotes are all rejected. String contents must be well-formed UTF-8 (RFC 8259 §8.1; Unicode Table 3-7):
/// overlong forms, surrogates (ED A0–BF), code points past U+10FFFF, stray continuation bytes and truncated
/// sequences are reported as ``JSONSyntaxError/invalidUTF8Reason``, so a strict endpoint never receives them.
///
/// ```swift
/// let scan = try JSONScanner.scanObject(bytes) { key, value in
///     if key.elementsEqual("type".utf8) { typeRange = value.range }
/// }
/// ```
public enum JSONScanner {
    /// The maximum nesting depth accepted; deeper documents are reported as malformed instead of recursing on.
    public static let maximumDepth = 512

    /// The kind of a JSON value.
    public enum ValueKind: Sendable, Hashable {
        case object, array, string, number, literal
    }

    /// Where a top-level member's value sits in the scanned bytes.
    public struct Member: Sendable {
        /// The kind of the value.
        public var kind: ValueKind
        /// The byte range of the raw value (for a string: including its quotes).
        public var range: Range<Int>
        /// Whether a string value contains backslash escapes (its raw bytes then differ from its text).
        public var hasEscapes: Bool

        @inlinable
        init(kind: ValueKind, range: Range<Int>, hasEscapes: Bool) {
            self.kind = kind
            self.range = range
            self.hasEscapes = hasEscapes
        }
    }

    /// Validates `bytes` as exactly one JSON value with optional surrounding whitespace.
    ///
    /// - Returns: The kind of the top-level value.
    /// - Throws: ``JSONSyntaxError`` naming the byte offset and what was expected there.
    @inlinable
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws(JSONSyntaxError) -> ValueKind {
        var parser = JSONByteParser(bytes)
        return try parser.parseDocument(reportMembers: false) { _, _ in }
    }

    /// Validates a buffer as exactly one JSON value; the result carries the top-level kind or the syntax error.
    public static func kind(of buffer: ByteBuffer) -> Result<ValueKind, JSONSyntaxError> {
        buffer.withUnsafeReadableBytes { bytes in
            do throws(JSONSyntaxError) {
                return .success(try Self.validate(bytes))
            } catch {
                return .failure(error)
            }
        }
    }

    /// Validates `bytes` as one JSON value and reports every member of the top-level object.
    ///
    /// - Parameters:
    ///   - bytes: The raw bytes of one line.
    ///   - onMember: Called for every top-level member with the key's raw bytes (between the quotes, escapes
    ///     not resolved) and where its value sits. Not called when the top-level value is not an object.
    /// - Returns: The kind of the top-level value.
    @inlinable
    public static func scan(
        _ bytes: UnsafeRawBufferPointer,
        onTopLevelMember: (UnsafeRawBufferPointer, Member) -> Void
    ) throws(JSONSyntaxError) -> ValueKind {
        var parser = JSONByteParser(bytes)
        return try parser.parseDocument(reportMembers: true, onTopLevelMember: onTopLevelMember)
    }
}

/// A JSON syntax error: where it happened and what was expected.
public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The byte offset in the scanned input.
    public var offset: Int
    /// A short, constant description of what was wrong.
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "\(self.reason) at byte \(self.offset)" }

    /// The reason given for ill-formed UTF-8 inside a string.
    public static let invalidUTF8Reason = "invalid UTF-8 in a string"

    /// Whether the error is ill-formed UTF-8 (reported under its own reason, `invalid_utf8`).
    public var isInvalidUTF8: Bool { self.reason == Self.invalidUTF8Reason }
}

/// The recursive-descent parser behind ``JSONScanner``. Internal, but `@usableFromInline` so that the scan
/// specialises into callers.
@usableFromInline
struct JSONByteParser {
    @usableFromInline let bytes: UnsafeRawBufferPointer
    @usableFromInline var index: Int = 0

    @inlinable
    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    @inlinable
    mutating func parseDocument(
        reportMembers: Bool,
        onTopLevelMember: (UnsafeRawBufferPointer, JSONScanner.Member) -> Void
    ) throws(JSONSyntaxError) -> JSONScanner.ValueKind {
        self.skipWhitespace()
        guard self.index < self.bytes.count else { throw self.error("empty input") }
        let kind: JSONScanner.ValueKind
        if reportMembers, self.bytes[self.index] == UInt8(ascii: "{") {
            try self.parseObject(depth: 1, reportMembers: true, onMember: onTopLevelMember)
            kind = .object
        } else {
            kind = try self.parseValue(depth: 1).kind
        }
        self.skipWhitespace()
        guard self.index == self.bytes.count else { throw self.error("unexpected bytes after the value") }
        return kind
    }

    @inlinable
    func error(_ reason: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: self.index, reason: reason)
    }

    @inlinable
    mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    @inlinable
    mutating func parseValue(depth: Int) throws(JSONSyntaxError) -> (kind: JSONScanner.ValueKind, hasEscapes: Bool) {
        guard self.index < self.bytes.count else { throw self.error("expected a value, found end of input") }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"):
            try self.parseObject(depth: depth, reportMembers: false) { _, _ in }
            return (.object, false)
        case UInt8(ascii: "["):
            try self.parseArray(depth: depth)
            return (.array, false)
        case UInt8(ascii: "\""):
            return (.string, try self.parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try self.parseNumber()
            return (.number, false)
        case UInt8(ascii: "t"):
            try self.expectLiteral("true")
            return (.literal, false)
        case UInt8(ascii: "f"):
            try self.expectLiteral("false")
            return (.literal, false)
        case UInt8(ascii: "n"):
            try self.expectLiteral("null")
            return (.literal, false)
        default:
            throw self.error("expected a value")
        }
    }

    @inlinable
    mutating func expectLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error("truncated literal") }
        let base = literal.utf8Start
        for offset in 0..<count where self.bytes[self.index + offset] != base[offset] {
            throw self.error("invalid literal")
        }
        self.index += count
    }

    @inlinable
    mutating func parseObject(
        depth: Int,
        reportMembers: Bool,
        onMember: (UnsafeRawBufferPointer, JSONScanner.Member) -> Void
    ) throws(JSONSyntaxError) {
        guard depth <= JSONScanner.maximumDepth else { throw self.error("nesting too deep") }
        self.index += 1  // {
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            return
        }
        while true {
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                throw self.error("expected a string key")
            }
            let keyStart = self.index + 1
            _ = try self.parseString()
            let keyEnd = self.index - 1
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else {
                throw self.error("expected ':' after a key")
            }
            self.index += 1
            self.skipWhitespace()
            let valueStart = self.index
            let value = try self.parseValue(depth: depth + 1)
            if reportMembers {
                let key = UnsafeRawBufferPointer(rebasing: self.bytes[keyStart..<keyEnd])
                onMember(key, .init(kind: value.kind, range: valueStart..<self.index, hasEscapes: value.hasEscapes))
            }
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unterminated object") }
            switch self.bytes[self.index] {
            case UInt8(ascii: ","):
                self.index += 1
                self.skipWhitespace()
            case UInt8(ascii: "}"):
                self.index += 1
                return
            default:
                throw self.error("expected ',' or '}' in an object")
            }
        }
    }

    @inlinable
    mutating func parseArray(depth: Int) throws(JSONSyntaxError) {
        guard depth <= JSONScanner.maximumDepth else { throw self.error("nesting too deep") }
        self.index += 1  // [
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            return
        }
        while true {
            _ = try self.parseValue(depth: depth + 1)
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unterminated array") }
            switch self.bytes[self.index] {
            case UInt8(ascii: ","):
                self.index += 1
                self.skipWhitespace()
            case UInt8(ascii: "]"):
                self.index += 1
                return
            default:
                throw self.error("expected ',' or ']' in an array")
            }
        }
    }

    /// Parses a string starting at its opening quote; returns whether it held escapes.
    @inlinable @inline(__always)
    mutating func parseString() throws(JSONSyntaxError) -> Bool {
        self.index += 1  // opening quote
        var hasEscapes = false
        let count = self.bytes.count
        scanning: while true {
            // Fastest path: eight bytes at a time while none can end or escape the string.
            self.index = JSONStringWords.skipPlainWords(self.bytes, from: self.index, stopsAtNonASCII: true)
            // Fast path: plain bytes are neither quote, backslash nor control characters; multi-byte UTF-8
            // sequences are validated as they come.
            while self.index < count {
                let byte = self.bytes[self.index]
                if byte >= 0x80 {
                    try self.skipUTF8Sequence(lead: byte)
                    continue scanning  // back to 8 bytes at a time
                }
                if byte == 0x22 || byte == 0x5C || byte < 0x20 { break }
                self.index += 1
            }
            guard self.index < count else { throw self.error("unterminated string") }
            let byte = self.bytes[self.index]
            if byte == 0x22 {
                self.index += 1
                return hasEscapes
            }
            if byte < 0x20 { throw self.error("control character in a string") }
            // Backslash escape.
            hasEscapes = true
            guard self.index + 1 < count else { throw self.error("unterminated escape") }
            switch self.bytes[self.index + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                self.index += 2
            case UInt8(ascii: "u"):
                guard self.index + 6 <= count else { throw self.error("truncated \\u escape") }
                for offset in 2..<6 where !Self.isHexDigit(self.bytes[self.index + offset]) {
                    throw self.error("invalid \\u escape")
                }
                self.index += 6
            default:
                throw self.error("invalid escape")
            }
        }
    }

    /// Skips one multi-byte UTF-8 sequence starting at `lead` (≥ 0x80), or throws if it is ill-formed
    /// (Unicode Table 3-7: the second byte's range depends on the lead byte).
    @inlinable
    mutating func skipUTF8Sequence(lead: UInt8) throws(JSONSyntaxError) {
        let length: Int
        var secondLow: UInt8 = 0x80
        var secondHigh: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondLow = 0xA0  // below: overlong
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondHigh = 0x9F  // above: UTF-16 surrogates
        case 0xF0:
            length = 4
            secondLow = 0x90  // below: overlong
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondHigh = 0x8F  // above: past U+10FFFF
        default:
            // 0x80–0xC1 (a stray continuation byte or an overlong 2-byte lead) and 0xF5–0xFF never start a sequence.
            throw JSONSyntaxError(offset: self.index, reason: JSONSyntaxError.invalidUTF8Reason)
        }
        let count = self.bytes.count
        guard self.index + length <= count else {
            throw JSONSyntaxError(offset: self.index, reason: JSONSyntaxError.invalidUTF8Reason)
        }
        let second = self.bytes[self.index + 1]
        guard second >= secondLow && second <= secondHigh else {
            throw JSONSyntaxError(offset: self.index, reason: JSONSyntaxError.invalidUTF8Reason)
        }
        var offset = 2
        while offset < length {
            guard self.bytes[self.index + offset] & 0xC0 == 0x80 else {
                throw JSONSyntaxError(offset: self.index, reason: JSONSyntaxError.invalidUTF8Reason)
            }
            offset += 1
        }
        self.index += length
    }

    @inlinable
    static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }

    /// Skips ASCII digits; returns how many. Eight bytes at a time while eight remain (``JSONDigitWords``).
    @inlinable @inline(__always)
    mutating func skipDigits() -> Int {
        let start = self.index
        let count = self.bytes.count
        if let base = self.bytes.baseAddress {
            while self.index + 8 <= count {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: self.index, as: UInt64.self))
                let digits = JSONDigitWords.leadingDigits(word)
                self.index += digits
                if digits < 8 { return self.index - start }
            }
        }
        while self.index < count, self.bytes[self.index] &- 0x30 < 10 {
            self.index += 1
        }
        return self.index - start
    }

    @inlinable @inline(__always)
    mutating func parseNumber() throws(JSONSyntaxError) {
        if self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count else { throw self.error("truncated number") }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
            if self.index < self.bytes.count, self.bytes[self.index] &- 0x30 < 10 {
                throw self.error("leading zero in a number")
            }
        } else if self.skipDigits() == 0 {
            throw self.error("expected a digit")
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            self.index += 1
            guard self.skipDigits() > 0 else { throw self.error("expected a digit after '.'") }
        }
        if self.index < self.bytes.count, self.bytes[self.index] | 0x20 == UInt8(ascii: "e") {
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            guard self.skipDigits() > 0 else { throw self.error("expected a digit in the exponent") }
        }
    }
}
