public import NIOCore
import TrickleRelaySupport

/// Rewrites the string *values* of a JSON document (never its keys, numbers or literals) in one pass,
/// copying every other byte unchanged.
///
/// The rewriter sees each value's raw content (between the quotes, escapes as written) and the raw name of the
/// member it belongs to — for a value inside an array, the member that holds the array; `nil` at the top level —
/// and may return a replacement raw content. The input must be valid, minified JSON (see ``JSONMinifier``).
public enum JSONStringRewriter {
    /// Rewrites string values.
    ///
    /// - Parameters:
    ///   - buffer: Valid, minified JSON.
    ///   - rewrite: Returns the new raw content for a string value, or `nil` to keep it.
    /// - Returns: The rewritten document and whether anything changed (the input itself when nothing did).
    public static func rewriteStringValues(
        _ buffer: ByteBuffer,
        _ rewrite: (_ key: UnsafeRawBufferPointer?, _ raw: UnsafeRawBufferPointer) -> [UInt8]?
    ) -> (ByteBuffer, changed: Bool) {
        var output: ByteBuffer?
        buffer.withUnsafeReadableBytes { bytes in
            // containers: true = object, false = array; expectingKey is meaningful inside objects.
            var containers: [Bool] = []
            // The member name each open container belongs to, and the name of the member being read.
            var owners: [Range<Int>?] = []
            var currentKey: Range<Int>?
            var expectingKey = false
            var copiedUpTo = 0
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "{"):
                    owners.append(containers.last == true ? currentKey : owners.last ?? nil)
                    containers.append(true)
                    expectingKey = true
                    index += 1
                case UInt8(ascii: "["):
                    owners.append(containers.last == true ? currentKey : owners.last ?? nil)
                    containers.append(false)
                    index += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    containers.removeLast()
                    currentKey = owners.popLast() ?? nil
                    index += 1
                case UInt8(ascii: ","):
                    expectingKey = containers.last == true
                    index += 1
                case UInt8(ascii: ":"):
                    expectingKey = false
                    index += 1
                case UInt8(ascii: "\""):
                    let start = index + 1
                    var end = start
                    while end < bytes.count {
                        if bytes[end] == UInt8(ascii: "\\") {
                            end += 2
                            continue
                        }
                        if bytes[end] == UInt8(ascii: "\"") { break }
                        end += 1
                    }
                    let isKey = containers.last == true && expectingKey
                    if isKey { currentKey = start..<end }
                    let owner = containers.last == true ? currentKey : (owners.last ?? nil)
                    if !isKey,
                        let replacement = rewrite(
                            owner.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) },
                            UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                        )
                    {
                        if output == nil { output = ByteBufferAllocator().buffer(capacity: bytes.count + 64) }
                        output!.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copiedUpTo..<start]))
                        output!.writeBytes(replacement)
                        copiedUpTo = end
                    }
                    index = end + 1
                default:
                    index += 1
                }
            }
            if output != nil {
                output!.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[copiedUpTo..<bytes.count]))
            }
        }
        if let output { return (output, true) }
        return (buffer, false)
    }
}
