#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The wall clock as Unix time (what envelopes, OTLP records and trace spans carry).
public enum WallClock {
    /// Nanoseconds since 1970 (to the microsecond or so: a `Double` of seconds underneath).
    public static func unixNanoseconds() -> UInt64 {
        let seconds = Date().timeIntervalSince1970
        return seconds > 0 ? UInt64(seconds * 1_000_000_000) : 0
    }
}
