import TrickleRelaySupport
/// The range of segment sequence numbers this implementation accepts, and their checked parsing.
///
/// A seq arrives from a request path, a response header or a flag, so it is hostile input (STYLE §6). Both
/// reference servers accept any 64-bit value and then compute `seq + 1` on it; a seq of `Int64.max` overflows.
/// We bound seqs to `0...maximum` (plus the protocol's `-1`/`-2` where allowed), which leaves every `seq + k`
/// for small `k` far from overflow: 2^53 − 1 is also the largest integer every JSON reader holds exactly.
/// At one segment per millisecond a channel would need 285,000 years to reach it.
public enum TrickleSeq {
    /// The largest seq a server, publisher or subscriber of ours uses or accepts.
    public static let maximum = (1 << 53) - 1

    /// Parses a seq from a request path: an integer in `-2...maximum` (`-1` = next, `-2` = latest).
    ///
    /// - Returns: The seq, or a reason it is refused (answered `400`).
    public static func parsePath<S: StringProtocol>(_ text: S) -> Result<Int, RangeError> {
        guard let value = Self.parseInteger(text) else { return .failure(RangeError("seq must be an integer, got \(Self.quote(text))")) }
        guard value >= -2 else { return .failure(RangeError("seq must be ≥ -2, got \(Self.quote(text))")) }
        guard value <= Self.maximum else {
            return .failure(RangeError("seq must be ≤ \(Self.maximum), got \(Self.quote(text))"))
        }
        return .success(value)
    }

    /// Parses a seq or nextWrite from a response header or body (`Lp-Trickle-Seq`, `Lp-Trickle-Latest`, `/next`):
    /// a non-negative integer up to ``maximum``. Anything else is `nil` — a protocol error, never a trap.
    public static func parseHeader<S: StringProtocol>(_ text: S) -> Int? {
        guard let value = Self.parseInteger(text), (0...Self.maximum).contains(value) else { return nil }
        return value
    }

    /// Whether a seq given in configuration (a flag) is usable as a start or publish seq.
    public static func isValid(_ seq: Int) -> Bool { (0...Self.maximum).contains(seq) }

    /// Why a seq was refused.
    public struct RangeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    private static func parseInteger<S: StringProtocol>(_ text: S) -> Int? {
        // At most 20 characters: enough for any Int64, and a 1 MB "number" is not parsed at all.
        let trimmed = text.utf8.count <= 64 ? String(text).trimmingWhitespace() : ""
        guard !trimmed.isEmpty, trimmed.utf8.count <= 20 else { return nil }
        return Int(trimmed)
    }

    private static func quote<S: StringProtocol>(_ text: S) -> String {
        text.count > 32 ? "\"\(text.prefix(32))…\"" : "\"\(text)\""
    }
}
