import DequeModule
public import NIOCore
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// The live feed behind the SSE endpoint: every relayed envelope (event name `telemetry`) and every other event
/// of the channel (named by its top-level `type`: `runner_ready`, `notification`…), each with a monotonic id;
/// the most recent ones are kept in a ring so a reconnecting client resumes with `Last-Event-ID`. As an
/// ``EgressSink`` it never fails and never blocks (the oldest entry leaves the ring when it is full).
public final class TelemetryStream: EgressSink {
    /// One event and its id (1, 2, 3… for this process).
    public struct Event: Sendable {
        public var id: Int
        /// The SSE event name: `telemetry`, or a local event's type.
        public var name: String
        /// The data: an envelope, or a local event's whole line.
        public var data: ByteBuffer
        /// The session label of the subscription it came from (`?session=` filters on it); `nil` when not
        /// from a daemon's subscription.
        public var session: String?
    }

    /// What a reader gets after an id.
    public struct Slice: Sendable {
        /// Events after the id asked for, oldest first.
        public var events: [Event]
        /// Events after that id that the ring no longer holds (a reader too far behind).
        public var missed: Int
    }

    private struct State {
        var ring: Deque<Event> = []
        var nextID: Int
    }

    /// Envelopes held for resumption. Default 10,000.
    public let capacity: Int
    /// The id of this run's first event. A daemon starts its ids past every id an earlier run can have handed out
    /// (``idsForThisRun()``), so a reader that resumes with an id from before a restart gets this run's events,
    /// not a gap or a repeat.
    public let firstID: Int
    private let state: RelayMutex<State>
    private let appended = GenerationSignal()

    public init(capacity: Int = 10_000, firstID: Int = 1) {
        self.capacity = max(capacity, 1)
        self.firstID = max(firstID, 1)
        self.state = RelayMutex(State(nextID: max(firstID, 1)))
    }

    /// A first id above any an earlier run handed out: the start time in milliseconds × 1,000 (ids stay below
    /// 2^53, exact in JavaScript, and a run would need more than a million events a second to catch up with the
    /// next run's start).
    public static func idsForThisRun() -> Int {
        Int(WallClock.unixNanoseconds() / 1_000_000) &* 1_000
    }

    /// The id of the latest envelope (0 before the first).
    public var latestID: Int { self.state.withLock { $0.nextID - 1 } }

    /// Events published in this run.
    public var publishedCount: Int { self.state.withLock { $0.nextID - self.firstID } }

    /// Bumped on every export; pass it to ``waitForEvents(past:)``.
    public var generation: UInt64 { self.appended.generation }

    /// Waits until something is exported after `generation`, or the task is cancelled.
    public func waitForEvents(past generation: UInt64) async { await self.appended.wait(past: generation) }

    /// Up to `limit` events after `id`. An id from the future (a client that saw an earlier run of this
    /// process) is treated as "from now on".
    public func events(after id: Int, limit: Int = 1_000) -> Slice {
        self.state.withLock { state in
            // A negative id (a caller's mistake; the server never passes one) reads as "from the start", and so does
            // an id from an earlier run of the daemon (below this run's first): what this run no longer holds is
            // counted as missed, nothing of the earlier run.
            let id = max(id, self.firstID - 1)
            guard id < state.nextID - 1, let oldest = state.ring.first?.id else { return Slice(events: [], missed: 0) }
            let first = max(id + 1, oldest)
            let start = first - oldest
            let end = min(start + limit, state.ring.count)
            return Slice(events: Array(state.ring[start..<end]), missed: first - (id + 1))
        }
    }

    // MARK: EgressSink

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        self.publish(records, session: nil)
    }

    /// Publishes relayed envelopes (event name `telemetry`) labelled with their subscription's session.
    public func publish(_ records: some Collection<TelemetryRecord>, session: String?) {
        guard !records.isEmpty else { return }
        self.state.withLock { state in
            for record in records {
                state.ring.append(Event(id: state.nextID, name: "telemetry", data: record.envelope, session: session))
                state.nextID += 1
            }
            if state.ring.count > self.capacity { state.ring.removeFirst(state.ring.count - self.capacity) }
        }
        self.appended.advance()
    }

    /// Publishes a non-telemetry event of the channel, named by its type (`event` when it has none).
    public func publish(_ event: EventDispatcher.LocalEvent, session: String? = nil) {
        let name = event.type.map { type in String(type.unicodeScalars.filter { $0.value > 0x20 && $0 != ":" }) } ?? "event"
        self.state.withLock { state in
            state.ring.append(Event(id: state.nextID, name: name.isEmpty ? "event" : name, data: event.line, session: session))
            state.nextID += 1
            if state.ring.count > self.capacity { state.ring.removeFirst(state.ring.count - self.capacity) }
        }
        self.appended.advance()
    }

    public func forceFlush() async throws {}
    public func shutdown() async {}
}
