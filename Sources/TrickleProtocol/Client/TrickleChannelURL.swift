import TrickleRelaySupport
/// The URL of one trickle channel, e.g. `http://127.0.0.1:2939/events-abc` or
/// `https://orch.example/ai/trickle/job-42-events`.
///
/// Validated once, at construction, so that every request built from it is well formed.
public struct TrickleChannelURL: Sendable, Hashable, CustomStringConvertible {
    /// The channel URL without a trailing slash, query or fragment.
    public private(set) var base: String
    /// The query string (without `?`), appended to every request; may carry a `jwt=` token.
    private let query: String?

    /// The last path component: the channel name.
    public var channelName: String {
        String(self.base[self.base.index(after: self.base.lastIndex(of: "/")!)...])
    }

    /// Parses and validates a channel URL.
    ///
    /// - Throws: ``TrickleClientError`` with code `.invalidURL` when the URL is not `http://` or `https://`,
    ///   has no host, names no channel, or holds a space or control character.
    public init(_ string: String) throws(TrickleClientError) {
        let trimmed = string.trimmingWhitespace()
        let lowered = trimmed.lowercased()
        guard lowered.hasPrefix("http://") || lowered.hasPrefix("https://") else {
            throw TrickleClientError(
                .invalidURL,
                "channel URL must be http(s)://HOST[:PORT]/PATH/CHANNEL, got \(Self.redacted(trimmed))"
            )
        }
        // A space or control character would split the request line (or be sent as is): percent-encoded only.
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
            throw TrickleClientError(
                .invalidURL,
                "channel URL must not hold spaces or control characters (percent-encode them), got \(Self.redacted(trimmed).debugDescription)"
            )
        }
        var withoutFragment = Substring(trimmed)
        if let hash = withoutFragment.firstIndex(of: "#") { withoutFragment = withoutFragment[..<hash] }
        var path = withoutFragment
        var query: String?
        if let mark = withoutFragment.firstIndex(of: "?") {
            path = withoutFragment[..<mark]
            query = String(withoutFragment[withoutFragment.index(after: mark)...])
        }
        while path.hasSuffix("/") { path = path.dropLast() }
        let afterScheme = path.dropFirst(lowered.hasPrefix("https://") ? 8 : 7)
        guard let slash = afterScheme.firstIndex(of: "/"), afterScheme[..<slash].isEmpty == false else {
            throw TrickleClientError(
                .invalidURL,
                "channel URL must name a host and a channel (http(s)://HOST[:PORT]/CHANNEL), got \(Self.redacted(trimmed))"
            )
        }
        guard afterScheme[afterScheme.index(after: slash)...].isEmpty == false else {
            throw TrickleClientError(
                .invalidURL,
                "channel URL must end in a channel name, got \(Self.redacted(trimmed))"
            )
        }
        self.base = String(path)
        self.query = (query?.isEmpty ?? true) ? nil : query
    }

    /// The URL of `suffix` below the channel (`""` for the channel itself, `"/5"`, `"/next"`).
    public func url(_ suffix: String = "") -> String {
        if let query { return "\(self.base)\(suffix)?\(query)" }
        return "\(self.base)\(suffix)"
    }

    /// The channel `name` beside this one on the same server (same path prefix, same query).
    public func sibling(named name: String) -> TrickleChannelURL {
        var copy = self
        copy.base = String(self.base[...self.base.lastIndex(of: "/")!]) + name
        return copy
    }

    /// The URL of segment `seq`.
    public func url(seq: Int) -> String { self.url("/\(seq)") }

    /// The URL with every query value replaced by `REDACTED`: safe for logs.
    public var description: String { Self.redacted(self.url()) }

    /// Replaces every query parameter value in `url` with `REDACTED` (tokens such as `jwt=` never reach a log).
    public static func redacted(_ url: String) -> String {
        guard let mark = url.firstIndex(of: "?") else { return url }
        let parameters = url[url.index(after: mark)...].split(separator: "&", omittingEmptySubsequences: false)
        let masked = parameters.map { parameter -> String in
            guard let equals = parameter.firstIndex(of: "=") else { return String(parameter) }
            return "\(parameter[..<equals])=REDACTED"
        }
        return "\(url[..<mark])?\(masked.joined(separator: "&"))"
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars = scalars.dropFirst() }
        while let last = scalars.last, last.isWhitespace { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
