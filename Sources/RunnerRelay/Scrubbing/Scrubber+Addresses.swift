import TrickleProtocol
import TrickleRelaySupport

/// Rule family: which IP addresses are not personal data (loopback, private ranges, link-local).
extension Scrubber {
    // MARK: Internal addresses

    /// Loopback (127/8), private (10/8, 172.16/12, 192.168/16), link-local (169.254/16), CGNAT (100.64/10) and
    /// 0.0.0.0: not personal data.
    static func isInternalIPv4(_ token: ArraySlice<UInt8>) -> Bool {
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
    static func isInternalIPv6(_ token: ArraySlice<UInt8>) -> Bool {
        var address = token
        if address.first == UInt8(ascii: "["), let close = address.firstIndex(of: UInt8(ascii: "]")) {
            address = address[(address.startIndex + 1)..<close]
        }
        let text = String(decoding: address, as: UTF8.self).lowercased()
        if text == "::1" || text == "::" { return true }
        return text.hasPrefix("fe8") || text.hasPrefix("fe9") || text.hasPrefix("fea") || text.hasPrefix("feb") || text.hasPrefix("fc")
            || text.hasPrefix("fd")
    }
}
