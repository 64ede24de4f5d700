import TrickleProtocol
import TrickleRelaySupport

/// Rule family: member names — credential-named keys redact whatever they hold, digest- and id-named keys are not
/// taken for secrets for being long hex.
extension Scrubber {
    // MARK: Keys

    /// Words of a member name that make it a credential (`client_secret`, `X-Api-Key`, `authToken`, `passwd`).
    static let credentialWords: [[UInt8]] = [
        "password", "passwd", "pwd", "passphrase", "secret", "token", "authorization", "cookie", "credential",
        "credentials", "apikey", "privatekey", "accesskey", "secretkey", "sessionkey", "jwt", "bearer", "auth",
    ].map { Array($0.utf8) }
    /// Two-word credentials (`api_key`, `private_key`, `access_key`, `secret_key`, `session_key`, `signing_key`):
    /// first words; the second is always `key`.
    static let credentialPairFirsts: [[UInt8]] = ["api", "private", "access", "secret", "session", "signing"].map { Array($0.utf8) }
    static let keyWord = Array("key".utf8)
    /// Words that make a value an identifier or a digest, not a secret, when the name ends with them.
    static let identifierWords: [[UInt8]] = [
        "commit", "sha", "sha1", "sha256", "digest", "hash", "checksum", "etag", "id", "ids", "uuid", "fingerprint", "revision",
    ].map { Array($0.utf8) }
    /// Words that make a value an identifier or a digest wherever they stand in the name (`commit_url`).
    static let digestWords: [[UInt8]] = ["commit", "sha", "digest", "checksum", "etag", "hash"].map { Array($0.utf8) }

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
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ word: [UInt8]) -> Bool {
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
    static func isMarker(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: "[REDACTED:".utf8)
    }
}
