import TrickleProtocol
import TrickleRelaySupport

/// Rule family: home-directory paths (`/home/<user>`, `/Users/<user>`, `C:\\Users\\<user>`): the user part goes.
extension Scrubber {
    // MARK: Home directories

    func scrubHomePaths(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        let prefixes = Self.homePrefixes
        var copy = RedactedCopy(bytes)
        var index = 0
        while index < bytes.count {
            var matched: [UInt8]?
            for prefix in prefixes where Self.hasPrefix(bytes, prefix, at: index) {
                matched = prefix
                break
            }
            guard let prefix = matched else {
                index += 1
                continue
            }
            var start = index
            if prefix.first == UInt8(ascii: ":"), start > 0, Self.isLetter(bytes[start - 1]) { start -= 1 }  // drive letter
            var end = index + prefix.count
            while end < bytes.count, !Self.endsPathComponent(bytes[end]) { end += 1 }
            guard end > index + prefix.count else {
                index += prefix.count
                continue
            }
            copy.replace(start..<end, with: .homePath)
            index = end
        }
        count += copy.count
        return copy.result
    }

    static func endsPathComponent(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\"")
            || byte == UInt8(ascii: "'") || byte == UInt8(ascii: ",") || byte == UInt8(ascii: ":")
    }
}
