import TrickleProtocol
import TrickleRelaySupport

/// Rule family: tokens — bearer tokens, and whole tokens classified by shape (provider prefixes, JWTs, e-mail,
/// IP addresses, long hex / base62 / base64 secrets; UUIDs pass).
extension Scrubber {
    // MARK: Bearer tokens

    func scrubBearer(_ bytes: [UInt8], count: inout Int) -> [UInt8] {
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

    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "~") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
    }


    // MARK: Tokens

    /// Splits the content into tokens at separators and classifies each.
    func scrubTokens(_ bytes: [UInt8], count: inout Int, identifierKey: Bool) -> [UInt8] {
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

    static func isSeparator(_ bytes: [UInt8], _ index: Int) -> Bool {
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

    static func prefixedKind(_ token: ArraySlice<UInt8>) -> Kind? {
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

    static func isEmail(_ token: ArraySlice<UInt8>) -> Bool {
        guard let at = token.firstIndex(of: UInt8(ascii: "@")), at > token.startIndex else { return false }
        let domain = token[(at + 1)...]
        guard let dot = domain.lastIndex(of: UInt8(ascii: ".")), dot > domain.startIndex, dot < domain.endIndex - 2 else {
            return false
        }
        let local = token[..<at]
        return local.allSatisfy { isAlphanumeric($0) || "._%+-".utf8.contains($0) }
            && domain.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    static func isJWT(_ token: ArraySlice<UInt8>) -> Bool {
        guard hasPrefix(token, "eyJ") else { return false }
        let parts = token.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].count >= 10 && parts[1].count >= 2
            && parts.allSatisfy { $0.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") } }
    }

    static func isIPv4(_ token: ArraySlice<UInt8>) -> Bool {
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

    static func isIPv6(_ token: ArraySlice<UInt8>) -> Bool {
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

    static func isUUID(_ token: ArraySlice<UInt8>) -> Bool {
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
}
