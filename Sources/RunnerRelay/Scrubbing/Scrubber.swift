public import NIOCore
import TrickleProtocol

/// Scrubs secrets and personal data from every string value of an event before it leaves the runner.
///
/// Detected, and replaced by a marker such as `[REDACTED:email]`: API keys (`sk-…`, `sk_live_…`, AWS `AKIA…`),
/// bearer tokens, JWTs, GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), e-mail
/// addresses, IPv4 and IPv6 addresses, home-directory paths (`/home/<user>`, `/Users/<user>`,
/// `C:\Users\<user>`: the user part goes), long hex and mixed-case base62 secrets (≥ 32 characters), and base64
/// blobs over ``Configuration/base64Threshold``. Keys, numbers, booleans and UUIDs pass untouched, and a value
/// with nothing to scrub keeps its exact bytes.
///
/// Detection is hand-written byte scanning (no regex engine): it runs on the drain side of
/// ``TrickleEventsSink`` for every event.
public struct Scrubber: Sendable {
    /// Scrubber settings.
    public struct Configuration: Sendable {
        /// Runs of base64 characters at least this long are redacted as blobs. Default 64.
        public var base64Threshold: Int
        /// Hex or mixed-case base62 tokens at least this long are redacted as secrets. Default 32.
        public var secretThreshold: Int

        public init(base64Threshold: Int = 64, secretThreshold: Int = 32) {
            self.base64Threshold = base64Threshold
            self.secretThreshold = secretThreshold
        }
    }

    /// What a marker says was removed.
    public enum Kind: String, Sendable, CaseIterable {
        case apiKey = "api_key"
        case bearer
        case jwt
        case githubToken = "github_token"
        case email
        case ip
        case homePath = "home_path"
        case secret
        case base64
    }

    public let configuration: Configuration

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// Scrubs every string value of a minified JSON document.
    /// - Returns: The scrubbed document (the same bytes when nothing was found) and the number of redactions.
    public func scrub(json buffer: ByteBuffer) -> (ByteBuffer, redactions: Int) {
        var redactions = 0
        let threshold = min(self.configuration.secretThreshold, 20)
        let (result, _) = JSONStringRewriter.rewriteStringValues(buffer) { raw in
            // Most strings (types, ids, numbers as text) cannot hold anything: decide before copying them.
            guard Self.mightContainSomething(raw, threshold: threshold) else { return nil }
            let (scrubbed, count) = self.scrub(raw: Array(raw))
            redactions += count
            return count > 0 ? scrubbed : nil
        }
        return (result, redactions)
    }

    /// Scrubs one string's text.
    public func scrub(_ text: String) -> String {
        let (bytes, count) = self.scrub(raw: Array(text.utf8))
        return count > 0 ? String(decoding: bytes, as: UTF8.self) : text
    }

    /// Scrubs raw string content (JSON escapes as written). Returns the new bytes and how many redactions.
    func scrub(raw input: [UInt8]) -> ([UInt8], Int) {
        guard Self.mightContainSomething(input, threshold: min(self.configuration.secretThreshold, 20)) else {
            return (input, 0)
        }
        var count = 0
        var bytes = self.scrubHomePaths(input, count: &count)
        bytes = self.scrubBearer(bytes, count: &count)
        bytes = self.scrubTokens(bytes, count: &count)
        return (bytes, count)
    }

    /// A cheap pre-check: short strings without `@`, `.`, `:`, `/`, `\` or long runs cannot hold anything.
    private static func mightContainSomething(_ bytes: some Sequence<UInt8>, threshold: Int) -> Bool {
        var run = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "@"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "\\"),
                UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            case UInt8(ascii: " "):
                run = 0
            default:
                run += 1
                if run >= threshold { return true }
            }
        }
        return false
    }

    // The prefixes as they appear *raw* in JSON: a Windows backslash is written `\\`.
    private static let homePrefixes: [[UInt8]] = [
        Array("/home/".utf8), Array("/Users/".utf8), Array(":\\\\Users\\\\".utf8), Array(":\\\\users\\\\".utf8),
    ]

    private static func marker(_ kind: Kind) -> [UInt8] { Array("[REDACTED:\(kind.rawValue)]".utf8) }

    // MARK: Home directories

    private func scrubHomePaths(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        let prefixes = Self.homePrefixes
        var output: [UInt8] = []
        var index = 0
        var copied = 0
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
            output.append(contentsOf: bytes[copied..<start])
            output.append(contentsOf: Self.marker(.homePath))
            copied = end
            index = end
            count += 1
        }
        guard copied > 0 else { return bytes }
        output.append(contentsOf: bytes[copied...])
        return output
    }

    private static func endsPathComponent(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\"")
            || byte == UInt8(ascii: "'") || byte == UInt8(ascii: ",") || byte == UInt8(ascii: ":")
    }

    // MARK: Bearer tokens

    private func scrubBearer(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        var output: [UInt8] = []
        var index = 0
        var copied = 0
        while index + 7 < bytes.count {
            guard bytes[index] | 0x20 == UInt8(ascii: "b"), Self.hasPrefixIgnoringCase(bytes, "bearer ", at: index) else {
                index += 1
                continue
            }
            let tokenStart = index + 7
            var end = tokenStart
            while end < bytes.count, Self.isTokenCharacter(bytes[end]) { end += 1 }
            if end - tokenStart >= 8 {
                output.append(contentsOf: bytes[copied..<tokenStart])
                output.append(contentsOf: Self.marker(.bearer))
                copied = end
                count += 1
            }
            index = max(end, index + 1)
        }
        guard copied > 0 else { return bytes }
        output.append(contentsOf: bytes[copied...])
        return output
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "~") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
    }

    // MARK: Tokens

    /// Splits the content into tokens at separators and classifies each.
    private func scrubTokens(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        var output: [UInt8] = []
        var copied = 0
        var index = 0
        while index < bytes.count {
            if Self.isSeparator(bytes, index) {
                index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                continue
            }
            var end = index
            while end < bytes.count, !Self.isSeparator(bytes, end) { end += 1 }
            // Trailing punctuation belongs to the sentence, not the token.
            var tokenEnd = end
            while tokenEnd > index, [UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "!")].contains(bytes[tokenEnd - 1]) {
                tokenEnd -= 1
            }
            if tokenEnd > index, let kind = self.classify(bytes[index..<tokenEnd]) {
                if kind == .base64 {
                    // Base64 padding was split off as a separator: it belongs to the blob.
                    while tokenEnd < bytes.count, bytes[tokenEnd] == UInt8(ascii: "=") { tokenEnd += 1 }
                    end = max(end, tokenEnd)
                }
                output.append(contentsOf: bytes[copied..<index])
                output.append(contentsOf: Self.marker(kind))
                copied = tokenEnd
                count += 1
            }
            index = end
        }
        guard copied > 0 else { return bytes }
        output.append(contentsOf: bytes[copied...])
        return output
    }

    private static func isSeparator(_ bytes: [UInt8], _ index: Int) -> Bool {
        switch bytes[index] {
        case UInt8(ascii: " "), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "<"), UInt8(ascii: ">"),
            UInt8(ascii: "|"), UInt8(ascii: "'"), UInt8(ascii: "&"), UInt8(ascii: "?"), UInt8(ascii: "!"):
            return true
        case UInt8(ascii: "="):
            return true
        case UInt8(ascii: "\\"):
            // An escape such as \n or \" separates words; an escaped slash (\/) does not.
            return index + 1 < bytes.count && bytes[index + 1] != UInt8(ascii: "/")
        default:
            return false
        }
    }

    func classify(_ token: ArraySlice<UInt8>) -> Kind? {
        let length = token.count
        if length < 3 { return nil }
        if Self.isUUID(token) { return nil }
        if let kind = Self.prefixedKind(token) { return kind }
        if Self.isEmail(token) { return .email }
        if Self.isJWT(token) { return .jwt }
        if Self.isIPv4(token) || Self.isIPv6(token) { return .ip }
        if length >= self.configuration.secretThreshold {
            if token.allSatisfy(Self.isHexDigit) { return .secret }
            if token.allSatisfy(Self.isAlphanumeric), token.contains(where: Self.isDigit), token.contains(where: Self.isLower),
                token.contains(where: Self.isUpper)
            {
                return .secret
            }
        }
        if length >= self.configuration.base64Threshold, token.allSatisfy(Self.isBase64Character) { return .base64 }
        return nil
    }

    private static func prefixedKind(_ token: ArraySlice<UInt8>) -> Kind? {
        let githubPrefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]
        for prefix in githubPrefixes where Self.hasPrefix(token, prefix) && token.count >= prefix.utf8.count + 16 {
            return .githubToken
        }
        let keyPrefixes = ["sk-", "sk_live_", "sk_test_", "pk_live_", "rk_live_", "xoxb-", "xoxp-"]
        for prefix in keyPrefixes where Self.hasPrefix(token, prefix) && token.count >= prefix.utf8.count + 16 {
            return .apiKey
        }
        if Self.hasPrefix(token, "AKIA"), token.count == 20, token.dropFirst(4).allSatisfy({ isUpper($0) || isDigit($0) }) {
            return .apiKey
        }
        return nil
    }

    private static func isEmail(_ token: ArraySlice<UInt8>) -> Bool {
        guard let at = token.firstIndex(of: UInt8(ascii: "@")), at > token.startIndex else { return false }
        let domain = token[(at + 1)...]
        guard let dot = domain.lastIndex(of: UInt8(ascii: ".")), dot > domain.startIndex, dot < domain.endIndex - 2 else {
            return false
        }
        let local = token[..<at]
        return local.allSatisfy { isAlphanumeric($0) || "._%+-".utf8.contains($0) }
            && domain.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isJWT(_ token: ArraySlice<UInt8>) -> Bool {
        guard hasPrefix(token, "eyJ") else { return false }
        let parts = token.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].count >= 10 && parts[1].count >= 2
            && parts.allSatisfy { $0.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") } }
    }

    private static func isIPv4(_ token: ArraySlice<UInt8>) -> Bool {
        var address = token
        // Allow host:port and a CIDR suffix.
        if let colon = address.firstIndex(of: UInt8(ascii: ":")) {
            guard address[(colon + 1)...].allSatisfy(isDigit) else { return false }
            address = address[..<colon]
        }
        if let slash = address.firstIndex(of: UInt8(ascii: "/")) { address = address[..<slash] }
        let parts = address.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            guard (1...3).contains(part.count), part.allSatisfy(isDigit) else { return false }
            return (Int(String(decoding: part, as: UTF8.self)) ?? 256) <= 255
        }
    }

    private static func isIPv6(_ token: ArraySlice<UInt8>) -> Bool {
        var address = token
        if address.first == UInt8(ascii: "["), let close = address.firstIndex(of: UInt8(ascii: "]")) {
            address = address[(address.startIndex + 1)..<close]
        }
        if let percent = address.firstIndex(of: UInt8(ascii: "%")) { address = address[..<percent] }
        let colons = address.count(where: { $0 == UInt8(ascii: ":") })
        let hasDoubleColon = zip(address, address.dropFirst()).contains { $0 == UInt8(ascii: ":") && $1 == UInt8(ascii: ":") }
        guard colons >= 2, hasDoubleColon || colons >= 5 else { return false }
        guard address.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else { return false }
        let groups = address.split(separator: UInt8(ascii: ":"))
        return groups.allSatisfy { $0.count <= 4 || $0.contains(UInt8(ascii: ".")) } && !groups.isEmpty
            || (hasDoubleColon && groups.isEmpty)
    }

    private static func isUUID(_ token: ArraySlice<UInt8>) -> Bool {
        guard token.count == 36 else { return false }
        for (offset, byte) in token.enumerated() {
            if [8, 13, 18, 23].contains(offset) {
                if byte != UInt8(ascii: "-") { return false }
            } else if !isHexDigit(byte) {
                return false
            }
        }
        return true
    }

    // MARK: Byte classes

    private static func hasPrefix(_ bytes: [UInt8], _ prefix: [UInt8], at index: Int) -> Bool {
        guard index + prefix.count <= bytes.count else { return false }
        for offset in 0..<prefix.count where bytes[index + offset] != prefix[offset] { return false }
        return true
    }

    private static func hasPrefixIgnoringCase(_ bytes: [UInt8], _ prefix: String, at index: Int) -> Bool {
        let prefix = Array(prefix.utf8)
        guard index + prefix.count <= bytes.count else { return false }
        for offset in 0..<prefix.count where bytes[index + offset] | 0x20 != prefix[offset] | 0x20 { return false }
        return true
    }

    private static func hasPrefix(_ token: ArraySlice<UInt8>, _ prefix: String) -> Bool {
        token.starts(with: prefix.utf8)
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte &- 0x30 < 10 }
    static func isLower(_ byte: UInt8) -> Bool { byte &- 0x61 < 26 }
    static func isUpper(_ byte: UInt8) -> Bool { byte &- 0x41 < 26 }
    static func isLetter(_ byte: UInt8) -> Bool { isLower(byte) || isUpper(byte) }
    static func isAlphanumeric(_ byte: UInt8) -> Bool { isDigit(byte) || isLetter(byte) }
    static func isHexDigit(_ byte: UInt8) -> Bool { isDigit(byte) || (byte | 0x20) &- 0x61 < 6 }
    static func isBase64Character(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}
