import NIOCore
import Synchronization
import TrickleRelaySupport

/// The server's `_changes` channel, the convention of http-trickle's sample server: every channel created or
/// removed is announced there in a JSONL segment of `{"added":[…]}` and `{"removed":[…]}` lines, so a client
/// waiting for channels that do not exist yet follows this one channel instead of asking for each of them.
///
/// Changes that arrive within ``coalescing`` of each other go into one segment (thousands of sessions starting
/// at once make a few segments, not thousands). What is pending is bounded: past ``maximumPending`` changes the
/// rest are counted and announced as `{"lost":N}` — a reader then asks for every channel it waits for. The
/// channel itself is not one of the server's channels (not counted, never swept, not deletable, outside the
/// retained-bytes bound: at most ``retainedSegments`` × ``maximumPending`` names, ~64 MiB, typically a few KiB);
/// its ring holds ``retainedSegments`` segments so a reader a little behind a burst still reads them all.
final class ChannelChangeFeed: Sendable {
    /// The feed's channel name.
    static let channelName = "_changes"
    /// Names per line: a line stays a few tens of KiB.
    static let namesPerLine = 1_000
    /// Changes held between two segments; more are counted as lost.
    static let maximumPending = 20_000
    /// Segments of the feed a reader can still fetch behind the newest.
    static let retainedSegments = 64

    private struct State {
        var pending: [(added: Bool, name: String)] = []
        var lost = 0
    }

    let channel: ServerChannel
    private let state = RelayMutex(State())
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation
    private let coalescing: TimeAmount

    init(now: RelayClock.Instant, coalescing: TimeAmount = .milliseconds(20)) {
        self.channel = ServerChannel(name: Self.channelName, mimeType: "application/jsonl", ringSize: Self.retainedSegments, now: now)
        (self.wakeups, self.wakeup) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.coalescing = coalescing
    }

    /// Channel `name` was created.
    func added(_ name: String) { self.note(added: true, name) }

    /// Channel `name` was deleted or swept.
    func removed(_ name: String) { self.note(added: false, name) }

    private func note(added: Bool, _ name: String) {
        self.state.withLock { state in
            if state.pending.count < Self.maximumPending {
                state.pending.append((added, name))
            } else {
                state.lost &+= 1
            }
        }
        self.wakeup.yield()
    }

    /// Writes what is pending as one segment each time changes arrive (after the coalescing window), until
    /// cancelled. The window is real time on an event loop's timer: it only groups changes, nothing waits on it.
    func run(on loop: any EventLoop, now: @escaping @Sendable () -> RelayClock.Instant) async {
        for await _ in self.wakeups {
            guard await EventLoopSleep.sleep(for: self.coalescing, on: loop) else { return }
            self.flush(now: now())
        }
    }

    /// Writes what is pending now as one segment (nothing when nothing is pending).
    func flush(now: RelayClock.Instant) {
        let (pending, lost) = self.state.withLock { state in
            defer {
                state.pending = []
                state.lost = 0
            }
            return (state.pending, state.lost)
        }
        guard !pending.isEmpty || lost > 0 else { return }
        var segment = ByteBuffer()
        var index = 0
        while index < pending.count {
            // One line per run of the same kind, at most `namesPerLine` names.
            let kind = pending[index].added
            var end = index
            while end < pending.count, pending[end].added == kind, end - index < Self.namesPerLine { end += 1 }
            segment.writeString(kind ? #"{"added":["# : #"{"removed":["#)
            for position in index..<end {
                if position > index { segment.writeInteger(UInt8(ascii: ",")) }
                var name = pending[position].name
                name.withUTF8 { segment.writeJSONStringLiteral(UnsafeRawBufferPointer($0)) }
            }
            segment.writeString("]}\n")
            index = end
        }
        if lost > 0 { segment.writeString(#"{"lost":\#(lost)}"# + "\n") }
        self.channel.writeWholeSegment(segment, now: now)
    }

    /// Ends the feed (server shutdown): its readers are released.
    func close() {
        self.wakeup.finish()
        self.channel.close()
    }
}
