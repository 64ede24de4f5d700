public import NIOCore
import TrickleProtocol

/// Scrubs secrets and personal data from every string value of an event before it leaves the runner.
///
/// Detected, and replaced by a marker such as `[REDACTED:email]`: API keys (`sk-…`, `sk_live_…`, AWS `AKIA…`),
/// bearer tokens, JWTs, GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), e-mail
/// addresses, IPv4 and IPv6 addresses, home-directory paths (`/home/<user>`, `/Users/<user>`,
/// `C:\Users\<user>`: the user part goes), long hex and mixed-case base62 secrets (≥ 32 characters), and base64
/// blobs over ``Configuration/base64Threshold``, Google API keys (`AIza…`), Hugging Face tokens (`hf_…`), Slack
/// tokens (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xapp-`), PEM blocks (`-----BEGIN … KEY-----` to its
/// `END`), credentials in `key=value` / `key: value` text and URL queries (`?token=…`, `password=…`,
/// `aws_secret_access_key = …`), and the password of a URL's `user:password@`.
///
/// It is **key-aware** (``KeyClass``): a string under a member named like a credential (`password`, `secret`,
/// `token`, `api_key`, `authorization`, `cookie`, `private_key`, …) is redacted whatever it holds; one under a
/// member named like a digest or an id (`commit`, `sha`, `digest`, `hash`, `checksum`, `etag`, `trace_id`,
/// `span_id`, `*_id`) is not taken for a secret for being long hex or base62. Loopback, private-range and
/// link-local addresses are not personal data and pass. Keys, numbers, booleans and UUIDs pass untouched, and a
/// value with nothing to scrub keeps its exact bytes.
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
        case credential
        case privateKey = "private_key"
    }

    /// How a member's name bears on its value.
    public enum KeyClass: Sendable, Equatable {
        /// Named like a credential: the value is redacted whatever it holds.
        case credential
        /// Named like a digest or an id: long hex or base62 is not taken for a secret.
        case identifier
        /// Anything else: the value is scanned.
        case neutral
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
        let (result, _) = JSONStringRewriter.rewriteStringValues(buffer) { key, raw in
            let keyClass = key.map(Self.classify(key:)) ?? .neutral
            if keyClass == .credential {
                // A credential by name: nothing of it leaves, whatever it looks like (an empty one has nothing).
                guard !raw.isEmpty, !Self.isMarker(raw) else { return nil }
                redactions += 1
                return Self.marker(.credential)
            }
            // Most strings (types, ids, numbers as text) cannot hold anything: decide before copying them.
            guard Self.mightContainSomething(raw, threshold: threshold) else { return nil }
            let (scrubbed, count) = self.scrub(raw: Array(raw), identifierKey: keyClass == .identifier)
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
    ///
    /// - Parameter identifierKey: The value belongs to a member named like a digest or an id: long hex and
    ///   base62 runs are kept.
    func scrub(raw input: [UInt8], identifierKey: Bool = false) -> ([UInt8], Int) {
        guard Self.mightContainSomething(input, threshold: min(self.configuration.secretThreshold, 20)) else {
            return (input, 0)
        }
        var count = 0
        // `\/` is `/` (some encoders escape every slash): paths and URLs are matched on the plain form. Only a
        // value that was scrubbed is rewritten, so a clean one keeps its exact bytes.
        var bytes = Self.unescapingSlashes(input)
        bytes = self.scrubPEMBlocks(bytes, count: &count)
        bytes = self.scrubHomePaths(bytes, count: &count)
        bytes = self.scrubBearer(bytes, count: &count)
        bytes = self.scrubKeyValues(bytes, count: &count)
        bytes = self.scrubURLPasswords(bytes, count: &count)
        bytes = self.scrubTokens(bytes, count: &count, identifierKey: identifierKey)
        return count > 0 ? (bytes, count) : (input, 0)
    }

    private static func unescapingSlashes(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(UInt8(ascii: "\\")) else { return bytes }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
                if bytes[index + 1] == UInt8(ascii: "/") {
                    output.append(UInt8(ascii: "/"))
                } else {
                    output.append(bytes[index])
                    output.append(bytes[index + 1])
                }
                index += 2
                continue
            }
            output.append(bytes[index])
            index += 1
        }
        return output
    }

    /// A cheap pre-check: short strings without `@`, `.`, `:`, `/`, `\` or long runs cannot hold anything.
    private static func mightContainSomething(_ bytes: some Sequence<UInt8>, threshold: Int) -> Bool {
        var run = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "@"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "\\"),
                UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "="):
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

    static func marker(_ kind: Kind) -> [UInt8] { Array("[REDACTED:\(kind.rawValue)]".utf8) }

    // MARK: Home directories

    private func scrubHomePaths(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
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

    private static func endsPathComponent(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\"")
            || byte == UInt8(ascii: "'") || byte == UInt8(ascii: ",") || byte == UInt8(ascii: ":")
    }

    // MARK: Bearer tokens

    private func scrubBearer(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
        var copy = RedactedCopy(bytes)
        var index = 0
        while index + 7 < bytes.count {
            guard bytes[index] | 0x20 == UInt8(ascii: "b"), Self.hasPrefixIgnoringCase(bytes, "bearer ", at: index) else {
                index += 1
                continue
            }
            let tokenStart = index + 7
            var end = tokenStart
            while end < bytes.count, Self.isTokenCharacter(bytes[end]) { end += 1 }
            if end - tokenStart >= 8 {
                copy.replace(tokenStart..<end, with: .bearer)
            }
            index = max(end, index + 1)
        }
        count += copy.count
        return copy.result
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "~") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
    }

    // MARK: Tokens

    /// Splits the content into tokens at separators and classifies each.
    private func scrubTokens(_ bytes: [UInt8], count: inout Int, identifierKey: Bool) -> [UInt8] {
        var copy = RedactedCopy(bytes)
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
            if tokenEnd > index, let kind = self.classify(bytes[index..<tokenEnd]), !(identifierKey && (kind == .secret || kind == .base64)),
                !Self.isMarker(bytes[index..<tokenEnd])
            {
                if kind == .base64 {
                    // Base64 padding was split off as a separator: it belongs to the blob.
                    while tokenEnd < bytes.count, bytes[tokenEnd] == UInt8(ascii: "=") { tokenEnd += 1 }
                    end = max(end, tokenEnd)
                }
                copy.replace(index..<tokenEnd, with: kind)
            }
            index = end
        }
        count += copy.count
        return copy.result
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
        if Self.isIPv4(token) { return Self.isInternalIPv4(token) ? nil : .ip }
        if Self.isIPv6(token) { return Self.isInternalIPv6(token) ? nil : .ip }
        if length >= self.configuration.secretThreshold {
            // A git commit id (40 lowercase hex) is not a secret, nor personal data.
            if length == 40, token.allSatisfy({ Self.isDigit($0) || ($0 &- 0x61) < 6 }) { return nil }
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
        let keyPrefixes = ["sk-", "sk_live_", "sk_test_", "pk_live_", "rk_live_", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"]
        for prefix in keyPrefixes where Self.hasPrefix(token, prefix) && token.count >= prefix.utf8.count + 16 {
            return .apiKey
        }
        // Google API keys: "AIza" and 35 more of [0-9A-Za-z_-].
        if Self.hasPrefix(token, "AIza"), token.count == 39,
            token.dropFirst(4).allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        {
            return .apiKey
        }
        // Hugging Face tokens: "hf_" and 30+ letters and digits.
        if Self.hasPrefix(token, "hf_"), token.count >= 33, token.dropFirst(3).allSatisfy(isAlphanumeric) {
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

    // MARK: Keys

    /// Words of a member name that make it a credential (`client_secret`, `X-Api-Key`, `authToken`, `passwd`).
    private static let credentialWords: [[UInt8]] = [
        "password", "passwd", "pwd", "passphrase", "secret", "token", "authorization", "cookie", "credential",
        "credentials", "apikey", "privatekey", "accesskey", "secretkey", "sessionkey", "jwt", "bearer", "auth",
    ].map { Array($0.utf8) }
    /// Two-word credentials (`api_key`, `private_key`, `access_key`, `secret_key`, `session_key`, `signing_key`):
    /// first words; the second is always `key`.
    private static let credentialPairFirsts: [[UInt8]] = ["api", "private", "access", "secret", "session", "signing"].map { Array($0.utf8) }
    private static let keyWord = Array("key".utf8)
    /// Words that make a value an identifier or a digest, not a secret, when the name ends with them.
    private static let identifierWords: [[UInt8]] = [
        "commit", "sha", "sha1", "sha256", "digest", "hash", "checksum", "etag", "id", "ids", "uuid", "fingerprint", "revision",
    ].map { Array($0.utf8) }
    /// Words that make a value an identifier or a digest wherever they stand in the name (`commit_url`).
    private static let digestWords: [[UInt8]] = ["commit", "sha", "digest", "checksum", "etag", "hash"].map { Array($0.utf8) }

    /// Classifies a member name (raw JSON bytes): split into words at `_`, `-`, `.`, spaces and lower-to-upper
    /// case changes, compared case-insensitively. `tokens_per_second` and `tokenizer` are not `token`.
    ///
    /// Runs for every string value of every event on the runner's drain, so it allocates nothing: words are
    /// ranges of the name, compared in place.
    public static func classify(key raw: UnsafeRawBufferPointer) -> KeyClass {
        guard raw.count <= 128 else { return .neutral }
        var result = KeyClass.neutral
        var previous: Range<Int>?
        var last: Range<Int>?
        var start = 0
        var previousLower = false
        func endWord(at end: Int) {
            guard end > start, result != .credential else { return }
            let word = start..<end
            if Self.credentialWords.contains(where: { Self.equalsIgnoringCase(raw, word, $0) })
                || (previous.map { first in
                    Self.equalsIgnoringCase(raw, word, Self.keyWord)
                        && Self.credentialPairFirsts.contains { Self.equalsIgnoringCase(raw, first, $0) }
                } ?? false)
            {
                result = .credential
                return
            }
            if Self.digestWords.contains(where: { Self.equalsIgnoringCase(raw, word, $0) }) { result = .identifier }
            previous = word
            last = word
        }
        for index in 0..<raw.count {
            let byte = raw[index]
            let separator = byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: " ")
            if separator || (previousLower && isUpper(byte)) {
                endWord(at: index)
                start = separator ? index + 1 : index
            }
            previousLower = isLower(byte) || isDigit(byte)
        }
        endWord(at: raw.count)
        if result == .credential { return .credential }
        if let last, Self.identifierWords.contains(where: { Self.equalsIgnoringCase(raw, last, $0) }) { return .identifier }
        return result
    }

    /// Whether `bytes[range]` equals the lowercase `word`, ignoring ASCII case.
    private static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ word: [UInt8]) -> Bool {
        guard range.count == word.count else { return false }
        var offset = 0
        for index in range {
            let byte = bytes[index]
            if (isUpper(byte) ? byte | 0x20 : byte) != word[offset] { return false }
            offset += 1
        }
        return true
    }

    /// Whether `bytes` already is one of our markers (a second pass must not re-redact it).
    private static func isMarker(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: "[REDACTED:".utf8)
    }

    // MARK: key=value credentials

    /// `password=…`, `token: …`, `?api_key=…&`, `aws_secret_access_key = …`: the value after a credential-named
    /// word and `=` or `:` goes, up to the next separator.
    private func scrubKeyValues(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
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

    private static func isKeyCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    private static func endsCredentialValue(_ bytes: [UInt8], _ index: Int) -> Bool {
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

    private static let schemeSeparator = Array("://".utf8)
    private static let pemBegin = Array("-----BEGIN ".utf8)
    private static let pemEnd = Array("-----END ".utf8)

    /// `scheme://user:password@host`: the password goes, the user and host stay.
    private func scrubURLPasswords(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
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

    private static func endsURLAuthority(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "/") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#")
            || byte == UInt8(ascii: "\\")
    }

    // MARK: PEM blocks

    /// `-----BEGIN <label>-----` … `-----END <label>-----` (escaped newlines and all) becomes one marker; a block
    /// cut short (no END) is redacted to the end of the string.
    private func scrubPEMBlocks(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
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

    // MARK: Internal addresses

    /// Loopback (127/8), private (10/8, 172.16/12, 192.168/16), link-local (169.254/16), CGNAT (100.64/10) and
    /// 0.0.0.0: not personal data.
    private static func isInternalIPv4(_ token: ArraySlice<UInt8>) -> Bool {
        var address = token
        if let colon = address.firstIndex(of: UInt8(ascii: ":")) { address = address[..<colon] }
        if let slash = address.firstIndex(of: UInt8(ascii: "/")) { address = address[..<slash] }
        let octets = address.split(separator: UInt8(ascii: ".")).map { Int(String(decoding: $0, as: UTF8.self)) ?? 0 }
        guard octets.count == 4 else { return false }
        switch (octets[0], octets[1]) {
        case (127, _), (10, _), (0, _): return true
        case (172, 16...31), (192, 168), (169, 254), (100, 64...127): return true
        default: return false
        }
    }

    /// `::1`, `::`, link-local `fe80::/10` and unique-local `fc00::/7`.
    private static func isInternalIPv6(_ token: ArraySlice<UInt8>) -> Bool {
        var address = token
        if address.first == UInt8(ascii: "["), let close = address.firstIndex(of: UInt8(ascii: "]")) {
            address = address[(address.startIndex + 1)..<close]
        }
        let text = String(decoding: address, as: UTF8.self).lowercased()
        if text == "::1" || text == "::" { return true }
        return text.hasPrefix("fe8") || text.hasPrefix("fe9") || text.hasPrefix("fea") || text.hasPrefix("feb") || text.hasPrefix("fc")
            || text.hasPrefix("fd")
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

/// A copy of some bytes with non-overlapping ranges, in increasing order, replaced by redaction markers; the
/// bytes themselves (no copy) when nothing was replaced.
struct RedactedCopy {
    private let bytes: [UInt8]
    private var output: [UInt8] = []
    private var copied = 0
    /// Ranges replaced so far.
    private(set) var count = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Replaces `range` (at or after the end of the previous one) with the marker of `kind`.
    mutating func replace(_ range: Range<Int>, with kind: Scrubber.Kind) {
        self.output.append(contentsOf: self.bytes[self.copied..<range.lowerBound])
        self.output.append(contentsOf: Scrubber.marker(kind))
        self.copied = range.upperBound
        self.count += 1
    }

    /// The bytes with every replacement made.
    var result: [UInt8] {
        guard self.count > 0 else { return self.bytes }
        return self.output + self.bytes[self.copied...]
    }
}
