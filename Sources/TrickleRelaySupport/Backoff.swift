/// Exponential back-off with full jitter, shared by every retrying client in the project.
///
/// The n-th delay (n from 0) is a random duration in `[initial·2ⁿ / 2, initial·2ⁿ]`, capped at `maximum`.
public struct Backoff: Sendable, Hashable {
    /// The first delay before jitter.
    public var initial: Duration
    /// The largest delay.
    public var maximum: Duration

    /// Creates a back-off policy.
    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay to wait before retry number `attempt` (0 for the first retry).
    public func delay(forAttempt attempt: Int) -> Duration {
        let cappedExponent = min(max(attempt, 0), 30)
        let base = min(self.initial * (1 << cappedExponent), self.maximum)
        let fraction = Double.random(in: 0.5...1.0)
        return base * fraction
    }
}
