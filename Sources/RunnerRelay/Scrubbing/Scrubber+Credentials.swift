import TrickleProtocol
import TrickleRelaySupport

/// Rule family: credentials in text — `key=value` / `key: value` pairs and URL queries, the password of a URL's
/// `user:password@`, and PEM blocks.
extension Scrubber {
    // MARK: key=value credentials

    /// `password=…`, `token: …`, `?api_key=…&`, `aws_secret_access_key = …`: the value after a credential-named
    /// word and `=` or `:` goes, up to the next separator.
    func scrubKeyValues(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        var copy = RedactedCopy(bytes)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "=") || byte == UInt8(ascii: ":") else {
                index += 1
                continue
            }
            // The word before (letters, digits, _ and -), allowing one space before the sign.
            var wordEnd = index
            if wordEnd > 0, bytes[wordEnd - 1] == UInt8(ascii: " ") { wordEnd -= 1 }
            var wordStart = wordEnd
            while wordStart > 0, Self.isKeyCharacter(bytes[wordStart - 1]) { wordStart -= 1 }
            guard wordEnd > wordStart, bytes[wordStart..<wordEnd].withUnsafeBytes({ Self.classify(key: $0) }) == .credential
            else {
                index += 1
                continue
            }
            // The value: after the sign, optional spaces and an optional (escaped) quote, up to a separator.
            var valueStart = index + 1
            while valueStart < bytes.count, bytes[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
            if valueStart + 1 < bytes.count, bytes[valueStart] == UInt8(ascii: "\\"), bytes[valueStart + 1] == UInt8(ascii: "\"") {
                valueStart += 2
            } else if valueStart < bytes.count, bytes[valueStart] == UInt8(ascii: "'") {
                valueStart += 1
            }
            // "Authorization: Bearer …" was handled by the bearer pass; "Basic <credentials>" keeps its scheme.
            if Self.hasPrefixIgnoringCase(bytes, "bearer ", at: valueStart) {
                index += 1
                continue
            }
            if Self.hasPrefixIgnoringCase(bytes, "basic ", at: valueStart) { valueStart += 6 }
            var valueEnd = valueStart
            while valueEnd < bytes.count, !Self.endsCredentialValue(bytes, valueEnd) { valueEnd += 1 }
            // "//" after ":" is a URL scheme (https://), a value of 1–2 characters is rarely a credential.
            let value = bytes[valueStart..<valueEnd]
            guard value.count >= 3, !value.starts(with: "//".utf8), !Self.isMarker(value) else {
                index += 1
                continue
            }
            copy.replace(valueStart..<valueEnd, with: .credential)
            index = valueEnd
        }
        count += copy.count
        return copy.result
    }

    static func isKeyCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    static func endsCredentialValue(_ bytes: [UInt8], _ index: Int) -> Bool {
        switch bytes[index] {
        case UInt8(ascii: " "), UInt8(ascii: "&"), UInt8(ascii: ";"), UInt8(ascii: ","), UInt8(ascii: "'"), UInt8(ascii: ")"),
            UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: ">"), UInt8(ascii: "#"):
            return true
        case UInt8(ascii: "\\"):
            // An escaped quote or a \n ends it; an escaped slash does not.
            return index + 1 < bytes.count && bytes[index + 1] != UInt8(ascii: "/")
        default:
            return false
        }
    }


    // MARK: URL passwords

    static let schemeSeparator = Array("://".utf8)
    static let pemBegin = Array("-----BEGIN ".utf8)
    static let pemEnd = Array("-----END ".utf8)

    /// `scheme://user:password@host`: the password goes, the user and host stay.
    func scrubURLPasswords(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        var copy = RedactedCopy(bytes)
        var index = 0
        while index + 3 < bytes.count {
            guard bytes[index] == UInt8(ascii: ":"), Self.hasPrefix(bytes, Self.schemeSeparator, at: index) else {
                index += 1
                continue
            }
            var end = index + 3
            while end < bytes.count, !Self.endsURLAuthority(bytes[end]) { end += 1 }
            let authority = bytes[(index + 3)..<end]
            if let at = authority.lastIndex(of: UInt8(ascii: "@")), let colon = authority[..<at].firstIndex(of: UInt8(ascii: ":")),
                at > colon + 1, !Self.isMarker(bytes[(colon + 1)..<at])
            {
                copy.replace((colon + 1)..<at, with: .credential)
            }
            index = end
        }
        count += copy.count
        return copy.result
    }

    static func endsURLAuthority(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#")
            || byte == UInt8(ascii: "\\")
    }


    // MARK: PEM blocks

    /// `-----BEGIN <label>-----` … `-----END <label>-----` (escaped newlines and all) becomes one marker; a block
    /// cut short (no END) is redacted to the end of the string.
    func scrubPEMBlocks(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        let begin = Self.pemBegin
        let endMark = Self.pemEnd
        var copy = RedactedCopy(bytes)
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "-"), Self.hasPrefix(bytes, begin, at: index) else {
                index += 1
                continue
            }
            var end = bytes.count
            var search = index + begin.count
            while search < bytes.count {
                if bytes[search] == UInt8(ascii: "-"), Self.hasPrefix(bytes, endMark, at: search) {
                    // Past the END line's closing dashes.
                    var close = search + endMark.count
                    while close < bytes.count, bytes[close] != UInt8(ascii: "-") { close += 1 }
                    while close < bytes.count, bytes[close] == UInt8(ascii: "-") { close += 1 }
                    end = close
                    break
                }
                search += 1
            }
            copy.replace(index..<end, with: .privateKey)
            index = end
        }
        count += copy.count
        return copy.result
    }
}
