/// The scheme, host and port an `http(s)://` URL addresses: what a connection is made to, and what a message about
/// one names.
public struct HTTPOrigin: Sendable, Hashable, CustomStringConvertible {
    /// `https`.
    public var isTLS: Bool
    /// The host, without brackets for an IPv6 literal.
    public var host: String
    /// The port, the scheme's default when the URL names none.
    public var port: Int
    /// The URL's authority as written (the `Host` header's value).
    public var authority: String

    /// The origin of `url`, or `nil` when it is not `http(s)://` with a host and a port in 1…65535, or carries
    /// userinfo (left to the HTTP client, which reports it).
    public init?(url: String) {
        let lowered = url.prefix(8).lowercased()
        let schemeLength: Int
        if lowered.hasPrefix("http://") {
            self.isTLS = false
            schemeLength = 7
        } else if lowered.hasPrefix("https://") {
            self.isTLS = true
            schemeLength = 8
        } else {
            return nil
        }
        let afterScheme = url.dropFirst(schemeLength)
        let authority = afterScheme.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@") else { return nil }
        var host = Substring(authority)
        var port = self.isTLS ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let parsed = Int(rest.dropFirst()), (1...65_535).contains(parsed) else { return nil }
                port = parsed
            }
        } else if let colon = authority.lastIndex(of: ":") {
            guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65_535).contains(parsed) else { return nil }
            host = authority[..<colon]
            port = parsed
        }
        guard !host.isEmpty else { return nil }
        self.host = String(host)
        self.port = port
        self.authority = String(authority)
    }

    /// `host:port` (`[::1]:443` for IPv6).
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// Whether the host is an IP literal (TLS sends no server name for one).
    public var hostIsAddress: Bool {
        self.host.contains(":") || (!self.host.isEmpty && self.host.allSatisfy { $0.isNumber || $0 == "." })
    }
}
