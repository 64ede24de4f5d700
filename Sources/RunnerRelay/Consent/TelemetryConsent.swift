/// Whether telemetry may leave the runner, decided once at startup.
///
/// Precedence (highest first):
/// 1. `DO_NOT_TRACK=1` (any value other than empty, `0` or `false`) — off.
/// 2. `TRICKLE_RELAY_TELEMETRY=0` (or `off`, `false`, `no`) — off.
/// 3. `--telemetry on|off` on the command line.
/// 4. `TRICKLE_RELAY_TELEMETRY=1` (or `on`, `true`, `yes`) — on.
/// 5. Otherwise off: relaying telemetry is opt-in.
///
/// An explicit opt-out in the environment always wins, even over `--telemetry on`.
public struct TelemetryConsent: Sendable, Hashable, CustomStringConvertible {
    /// Whether telemetry is relayed.
    public let isEnabled: Bool
    /// Which rule decided, for the startup log line.
    public let reason: String

    /// Decides consent from the `--telemetry` flag (nil when absent) and the environment.
    public init(flag: Bool?, environment: [String: String]) {
        if let value = environment["DO_NOT_TRACK"], Self.isTruthyDoNotTrack(value) {
            (self.isEnabled, self.reason) = (false, "DO_NOT_TRACK is set")
        } else if let value = environment["TRICKLE_RELAY_TELEMETRY"], Self.parse(value) == false {
            (self.isEnabled, self.reason) = (false, "TRICKLE_RELAY_TELEMETRY=\(value)")
        } else if let flag {
            (self.isEnabled, self.reason) = (flag, "--telemetry \(flag ? "on" : "off")")
        } else if let value = environment["TRICKLE_RELAY_TELEMETRY"], Self.parse(value) == true {
            (self.isEnabled, self.reason) = (true, "TRICKLE_RELAY_TELEMETRY=\(value)")
        } else {
            (self.isEnabled, self.reason) = (false, "off by default (enable with --telemetry on or TRICKLE_RELAY_TELEMETRY=1)")
        }
    }

    /// `on`/`off` spellings accepted by `--telemetry` and `TRICKLE_RELAY_TELEMETRY`.
    public static func parse(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "1", "on", "true", "yes": return true
        case "0", "off", "false", "no": return false
        default: return nil
        }
    }

    private static func isTruthyDoNotTrack(_ value: String) -> Bool {
        !["", "0", "false", "no", "off"].contains(value.lowercased())
    }

    public var description: String { "telemetry \(self.isEnabled ? "on" : "off") (\(self.reason))" }
}
