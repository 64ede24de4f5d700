import ArgumentParser

/// Seconds given on the command line: checked once in `validate()` (finite, at most a year), then converted
/// without a trap. `--segment-window 1e300` is a usage error, not an overflow.
enum SecondsFlag {
    /// The largest number of seconds any flag accepts: one year.
    static let maximum: Double = 31_536_000

    /// Throws a usage error unless `value` is finite and within `0 < value ≤ maximum` (or `0 ≤ …` when allowed).
    static func check(_ value: Double, _ flag: String, allowsZero: Bool = false) throws {
        guard value.isFinite, allowsZero ? value >= 0 : value > 0, value <= Self.maximum else {
            throw ValidationError("\(flag) must be \(allowsZero ? "0" : "more than 0") to \(Int(Self.maximum)) seconds, got \(value)")
        }
    }

    /// The duration of a checked value (clamped again, so that an unchecked caller cannot trap either).
    static func duration(_ value: Double) -> Duration {
        let clamped = value.isFinite ? min(max(value, 0), Self.maximum) : 0
        return .milliseconds(Int64((clamped * 1000).rounded()))
    }
}
