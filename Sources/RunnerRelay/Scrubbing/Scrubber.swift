public import NIOCore
import TrickleProtocol
import TrickleRelaySupport

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

    static func unescapingSlashes(_ bytes: [UInt8]) -> [UInt8] {
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
    static func mightContainSomething(_ bytes: some Sequence<UInt8>, threshold: Int) -> Bool {
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
    static let homePrefixes: [[UInt8]] = [
        Array("/home/".utf8), Array("/Users/".utf8), Array(":\\\\Users\\\\".utf8), Array(":\\\\users\\\\".utf8),
    ]

    static func marker(_ kind: Kind) -> [UInt8] { Array("[REDACTED:\(kind.rawValue)]".utf8) }
}
