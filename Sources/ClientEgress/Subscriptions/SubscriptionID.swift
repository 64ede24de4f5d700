public import TrickleProtocol
import TrickleRelaySupport

/// The id of a daemon's subscription: `[A-Za-z0-9._-]{1,64}`, stable for a channel (derived from its URL), so
/// a spool record, a persisted subscription and an API path all name the channel the same way across restarts.
public enum SubscriptionID {
    /// The longest id.
    public static let maximumLength = 64

    /// Whether `byte` may appear in an id.
    @inlinable
    public static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Whether `id` is a well-formed id.
    public static func isValid(_ id: String) -> Bool {
        let bytes = id.utf8
        return !bytes.isEmpty && bytes.count <= self.maximumLength && bytes.allSatisfy(self.isAllowed)
    }

    /// The id of the channel at `url`: its name (letters, digits, `.`, `_`, `-` kept, the rest as `_`; at most
    /// 40 characters), a dash, and 8 hex digits of a hash of the channel URL without its query — so two
    /// channels of the same name on different servers differ, and a `jwt=` token does not change the id.
    public static func derived(from url: TrickleChannelURL) -> String {
        var name = String(decoding: url.channelName.utf8.prefix(40).map { self.isAllowed($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
        if name.isEmpty { name = "channel" }
        // FNV-1a, 64 bits, folded to 32: stable across runs and platforms (Swift's Hasher is seeded per process).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in url.base.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let folded = UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
        let hex = String(folded, radix: 16)
        return name + "-" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}
