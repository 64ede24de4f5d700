public import NIOCore

/// Any `Clock` whose durations are `Duration`, reduced to what the relay's timers need — the time since the clock
/// was taken and sleeping — so a type takes a clock without becoming generic over it. Production code passes
/// nothing (``continuous``, a `ContinuousClock`); tests pass a manual clock and advance it instead of sleeping.
///
/// ```swift
/// init(…, clock: some Clock<Duration> = ContinuousClock()) { self.clock = RelayClock(clock) }
/// let started = self.clock.now
/// try await self.clock.sleep(for: .seconds(30))
/// if self.clock.now - started >= interval { … }
/// ```
public struct RelayClock: Clock, Sendable {
    /// A point in time of a ``RelayClock``: the time since the clock was taken.
    public struct Instant: InstantProtocol, Sendable {
        /// Time since the clock was taken.
        public var offset: Duration

        public init(offset: Duration) { self.offset = offset }

        public func advanced(by duration: Duration) -> Self { Self(offset: self.offset + duration) }
        public func duration(to other: Self) -> Duration { other.offset - self.offset }

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.offset < rhs.offset }
        public static func + (lhs: Self, rhs: Duration) -> Self { Self(offset: lhs.offset + rhs) }
        public static func - (lhs: Self, rhs: Self) -> Duration { lhs.offset - rhs.offset }
        public static func - (lhs: Self, rhs: Duration) -> Self { Self(offset: lhs.offset - rhs) }
    }

    private let elapsed: @Sendable () -> Duration
    private let sleeper: @Sendable (Duration) async throws -> Void
    /// The event loops whose timers measure this clock's time (``eventLoopTimers(_:)``); `nil` for any other
    /// clock. A waiter with a timeout can then be one scheduled task on a loop instead of a sleeping task.
    public let timerEventLoops: (any EventLoopGroup)?

    /// Wraps `clock`; its "now" at this call is ``Instant`` zero.
    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        self.elapsed = { origin.duration(to: clock.now) }
        self.sleeper = { duration in try await clock.sleep(until: clock.now.advanced(by: duration), tolerance: nil) }
        self.timerEventLoops = nil
    }

    private init(
        elapsed: @escaping @Sendable () -> Duration,
        sleeper: @escaping @Sendable (Duration) async throws -> Void,
        timerEventLoops: any EventLoopGroup
    ) {
        self.elapsed = elapsed
        self.sleeper = sleeper
        self.timerEventLoops = timerEventLoops
    }

    /// The wall of real time: a `ContinuousClock`.
    public static var continuous: RelayClock { RelayClock(ContinuousClock()) }

    /// Real time (a `ContinuousClock`'s) whose sleeps are scheduled tasks on `group`'s event loops
    /// (``EventLoopSleep``): for types of which there are thousands, each sleeping a while — a timer thread and a
    /// Dispatch hand-off per sleep (what `Task.sleep` costs) add up there.
    public static func eventLoopTimers(_ group: any EventLoopGroup) -> RelayClock {
        let origin = ContinuousClock.now
        return RelayClock(
            elapsed: { origin.duration(to: .now) },
            sleeper: { duration in
                guard await EventLoopSleep.sleep(for: TimeAmount(max(duration, .zero)), on: group.any()) else { throw CancellationError() }
            },
            timerEventLoops: group
        )
    }

    /// Now.
    public var now: Instant { Instant(offset: self.elapsed()) }

    /// Suspends for `duration` of this clock's time (throws `CancellationError` when cancelled).
    public func sleep(for duration: Duration) async throws {
        try await self.sleeper(duration)
    }

    /// Suspends until `deadline` of this clock's time; returns at once when it has passed.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await self.sleeper(max(deadline - self.now, .zero))
    }

    public var minimumResolution: Duration { .zero }
}
