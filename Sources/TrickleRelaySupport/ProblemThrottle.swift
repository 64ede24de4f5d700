/// Decides which reports of bad input reach the log: per kind, the first few in full, then one aggregated line
/// per interval with the count (STYLE §6). Counting for `/metrics` and summaries is the caller's, always.
public struct ProblemThrottle: Sendable {
    /// What to log for one report.
    public enum Decision: Sendable, Equatable {
        /// Log this one with its position and detail.
        case detailed
        /// Log nothing now.
        case suppressed
        /// Log one line: `count` more of this kind were suppressed since the last line.
        case aggregate(count: Int)
    }

    /// Reports logged in full per kind.
    public let detailedPerKind: Int
    /// The shortest time between two aggregated lines of one kind.
    public let interval: Duration
    private var kinds: [String: Kind] = [:]

    private struct Kind {
        var seen = 0
        var suppressed = 0
        var lastAggregate: RelayClock.Instant
    }

    /// Creates a throttle.
    public init(detailedPerKind: Int = 5, interval: Duration = .seconds(10)) {
        self.detailedPerKind = detailedPerKind
        self.interval = interval
    }

    /// Notes one report of `kind`.
    public mutating func note(_ kind: String, at now: RelayClock.Instant) -> Decision {
        // Kinds are a small fixed set in practice; a caller passing unbounded names is still capped here.
        if self.kinds[kind] == nil && self.kinds.count >= 64 { return .suppressed }
        var entry = self.kinds[kind] ?? Kind(lastAggregate: now)
        defer { self.kinds[kind] = entry }
        entry.seen = entry.seen < Int.max ? entry.seen + 1 : Int.max
        if entry.seen <= self.detailedPerKind {
            entry.lastAggregate = now
            return .detailed
        }
        entry.suppressed += 1
        guard now - entry.lastAggregate >= self.interval else { return .suppressed }
        let count = entry.suppressed
        entry.suppressed = 0
        entry.lastAggregate = now
        return .aggregate(count: count)
    }

    /// The reports suppressed and not yet aggregated, per kind; clears them (for a final line at the end).
    public mutating func drainSuppressed() -> [(kind: String, count: Int)] {
        var result: [(kind: String, count: Int)] = []
        for (name, entry) in self.kinds where entry.suppressed > 0 {
            result.append((name, entry.suppressed))
            self.kinds[name]?.suppressed = 0
        }
        return result.sorted { $0.kind < $1.kind }
    }
}
