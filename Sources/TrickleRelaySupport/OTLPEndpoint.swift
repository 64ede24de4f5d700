#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// An OTLP/HTTP receiver's URL for one signal (`/v1/traces`, `/v1/logs`), checked: `https://` anywhere, or
/// `http://` on this machine only — telemetry and its headers (tokens) must not cross a network in clear text.
public struct OTLPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// The URL requests go to, the signal's path included.
    public let url: String

    /// Why a URL cannot be used, and what to write instead.
    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }

    /// Parses `text`; a URL with no path (or `/`) gets the signal's default path (`/v1/logs` for
    /// `signalPath: "/v1/logs"`), as OpenTelemetry's base endpoint variables do.
    ///
    /// - Parameter what: Names the setting in errors (`--sink otlp:`, `TRICKLE_RELAY_OTLP_TRACES_ENDPOINT`).
    public init(parsing text: String, signalPath: String, what: String) throws(Failure) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else {
            throw Failure(description: "\(what) must be an http(s)://HOST[:PORT][/PATH] URL, got \(Self.redacted(text))")
        }
        if scheme == "http", !ListenAddress.isLoopback(host) {
            throw Failure(
                description: "\(what) \(Self.redacted(text)) is http:// to another machine: use https:// (telemetry and its headers would cross the network in clear text), or an http:// receiver on 127.0.0.1"
            )
        }
        var resolved = components
        if resolved.path.isEmpty || resolved.path == "/" { resolved.path = signalPath }
        self.url = resolved.string ?? text
    }

    /// The URL without its query (which may carry a token).
    public var description: String { Self.redacted(self.url) }

    /// `text` with its query (which may carry a token) replaced, for an error message.
    public init(redacting text: String) { self.url = Self.redacted(text) }

    static func redacted(_ text: String) -> String {
        guard let question = text.firstIndex(of: "?") else { return text }
        return text[..<question] + "?REDACTED"
    }

    /// Parses OpenTelemetry's header list, `key=value,key2=value2` with percent-encoded values
    /// (`OTEL_EXPORTER_OTLP_HEADERS`' format).
    public static func headers(parsing text: String, what: String) throws(Failure) -> [(String, String)] {
        var headers: [(String, String)] = []
        for (index, item) in text.split(separator: ",").enumerated() {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = TextParsing.trimmed(pair[0])
            guard pair.count == 2, !key.isEmpty, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }) else {
                // The entry may be a secret (a token pasted without its key): name its position only.
                throw Failure(description: "\(what) must be key=value[,key=value…]; entry \(index + 1) is not")
            }
            let raw = TextParsing.trimmed(pair[1])
            guard let value = TextParsing.percentDecoded(raw), !value.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 }) else {
                throw Failure(description: "\(what): the value of \(key) is not valid percent-encoded text")
            }
            headers.append((key, value))
        }
        return headers
    }
}
