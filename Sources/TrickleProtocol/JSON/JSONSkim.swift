import TrickleRelaySupport
/// Finds members of a JSON object that is **already known to be valid** (it passed a ``JSONScanner`` scan),
/// without validating again: a byte skim that only tracks strings and nesting. Several times faster than a
/// validating scan; on invalid input it returns `nil` or a wrong range, never crashes.
public enum JSONSkim {
    /// The byte range of the value of the top-level member `name` (raw bytes; a string keeps its quotes).
    public static func member(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let start = Self.valueStart(name, in: bytes), let end = Self.valueEnd(bytes, start) else { return nil }
        return start..<end
    }

    /// Where the value of the top-level member `name` starts, without finding where it ends: for reading a
    /// member *inside* it (`data.type`) without skimming the rest of it (a long `data` costs nothing).
    public static func valueStart(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Int? {
        let key = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        var index = Self.skipWhitespace(bytes, 0)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        while true {
            index = Self.skipWhitespace(bytes, index)
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            let keyStart = index + 1
            guard let keyEnd = Self.stringEnd(bytes, index) else { return nil }
            index = Self.skipWhitespace(bytes, keyEnd)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            let valueStart = Self.skipWhitespace(bytes, index + 1)
            if keyEnd - 1 - keyStart == key.count, RawBytes.equal(UnsafeRawBufferPointer(rebasing: bytes[keyStart..<(keyEnd - 1)]), key) {
                return valueStart < bytes.count ? valueStart : nil
            }
            guard let valueEnd = Self.valueEnd(bytes, valueStart) else { return nil }
            index = Self.skipWhitespace(bytes, valueEnd)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }

    /// Walks the top-level members of an object: `visit(key, valueStart)` for each (the key as written, without its
    /// quotes) until it returns `false` or the object ends. A value is skimmed only when the walk goes on past it.
    public static func forEachMember(in bytes: UnsafeRawBufferPointer, _ visit: (UnsafeRawBufferPointer, Int) -> Bool) {
        var index = Self.skipWhitespace(bytes, 0)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return }
        index += 1
        while true {
            index = Self.skipWhitespace(bytes, index)
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return }
            let keyStart = index + 1
            guard let keyEnd = Self.stringEnd(bytes, index) else { return }
            index = Self.skipWhitespace(bytes, keyEnd)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return }
            let valueStart = Self.skipWhitespace(bytes, index + 1)
            guard valueStart < bytes.count, visit(UnsafeRawBufferPointer(rebasing: bytes[keyStart..<(keyEnd - 1)]), valueStart) else { return }
            guard let valueEnd = Self.valueEnd(bytes, valueStart) else { return }
            index = Self.skipWhitespace(bytes, valueEnd)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return }
            index += 1
        }
    }

    /// The contents (between the quotes) of the string value starting at `start`, or `nil` when it is not a string.
    public static func stringContents(at start: Int, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard start < bytes.count, bytes[start] == UInt8(ascii: "\""), let end = Self.stringEnd(bytes, start) else { return nil }
        return (start + 1)..<(end - 1)
    }

    /// Whether `key` (as written) is `name`.
    public static func key(_ key: UnsafeRawBufferPointer, is name: StaticString) -> Bool {
        RawBytes.equal(key, name)
    }

    /// The byte range of the contents (between the quotes, escapes as written) of the top-level member `name`,
    /// when it is a string.
    public static func stringContents(_ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let value = Self.member(name, in: bytes), value.count >= 2, bytes[value.lowerBound] == UInt8(ascii: "\"") else {
            return nil
        }
        return (value.lowerBound + 1)..<(value.upperBound - 1)
    }

    /// The index just past the string starting (with its quote) at `start`.
    static func stringEnd(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        var index = JSONStringWords.skipPlainWords(bytes, from: start + 1)
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""): return index + 1
            case UInt8(ascii: "\\"): index += 2
            default: index += 1
            }
        }
        return nil
    }

    /// The index just past the value starting at `start`.
    static func valueEnd(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        guard start < bytes.count else { return nil }
        switch bytes[start] {
        case UInt8(ascii: "\""):
            return Self.stringEnd(bytes, start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    guard let end = Self.stringEnd(bytes, index) else { return nil }
                    index = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default:
                    break
                }
                index += 1
            }
            return nil
        default:
            var index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D: return index
                default: index += 1
                }
            }
            return index
        }
    }

    static func skipWhitespace(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var index = start
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A || bytes[index] == 0x0D {
            index += 1
        }
        return index
    }
}
