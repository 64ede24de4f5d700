import Synchronization
import TrickleRelaySupport

/// The channels of one embedded server, by name.
///
/// A deleted channel is kept for a short grace period in which only GETs of its retained segments are served
/// (everything else behaves as if it were gone: 404 for POSTs and `/next`, `Lp-Trickle-Closed` for GETs at or
/// past its end). go-livepeer forgets the channel at once, so a reader one segment behind the publisher's final
/// DELETE loses the tail; ours does better for such readers.
final class ChannelRegistry: Sendable {
    private struct Tombstone {
        var channel: ServerChannel
        var deletedAt: RelayClock.Instant
    }

    private let channels = RelayMutex<[String: ServerChannel]>([:])
    private let tombstones = RelayMutex<[String: Tombstone]>([:])
    private let ringSize: Int
    private let gracePeriod: Duration
    private let maximumChannels: Int
    let accounting: ServerAccounting
    /// The server's time: segment starts, deletions, the idle sweep and the grace period are read from it.
    let clock: RelayClock
    /// `_changes`, where creations and removals are announced; `nil` when the server keeps no feed.
    let changeFeed: ChannelChangeFeed?

    init(
        ringSize: Int,
        gracePeriod: Duration,
        maximumChannels: Int = .max,
        accounting: ServerAccounting = .init(maximumRetainedBytes: .max),
        clock: RelayClock = .continuous,
        announcesChanges: Bool = false
    ) {
        self.clock = clock
        self.changeFeed = announcesChanges ? ChannelChangeFeed(now: clock.now) : nil
        self.ringSize = ringSize
        self.gracePeriod = gracePeriod
        self.maximumChannels = maximumChannels
        self.accounting = accounting
    }

    /// A live channel (the change feed's too).
    func channel(named name: String) -> ServerChannel? {
        if let feed = self.changeFeed, name == ChannelChangeFeed.channelName { return feed.channel }
        return self.channels.withLock { $0[name] }
    }

    /// A live channel, or a deleted one still in its grace period (for GETs only).
    func channelForReading(named name: String) -> ServerChannel? {
        if let live = self.channel(named: name) { return live }
        let now = self.clock.now
        return self.tombstones.withLock { tombstones in
            guard let tombstone = tombstones[name] else { return nil }
            guard now - tombstone.deletedAt < self.gracePeriod else {
                tombstones[name] = nil
                return nil
            }
            return tombstone.channel
        }
    }

    /// Returns the channel, creating it when missing. `created` tells which happened; `nil` when the channel is
    /// missing and the channel bound is reached (only when `enforcingLimit`).
    func channel(
        named name: String,
        creatingWith mimeType: String,
        enforcingLimit: Bool = true
    ) -> (channel: ServerChannel, created: Bool)? {
        if let feed = self.changeFeed, name == ChannelChangeFeed.channelName { return (feed.channel, false) }
        let made: (channel: ServerChannel, created: Bool)? = self.channels.withLock { channels in
            if let existing = channels[name] { return (existing, false) }
            guard !enforcingLimit || channels.count < self.maximumChannels else { return nil }
            let channel = ServerChannel(name: name, mimeType: mimeType, ringSize: self.ringSize, now: self.clock.now, accounting: self.accounting)
            channels[name] = channel
            return (channel, true)
        }
        if let made, made.created, !name.hasPrefix("_") { self.changeFeed?.added(name) }
        return made
    }

    /// Deleted channels still readable in their grace period.
    var tombstoneCount: Int { self.tombstones.withLock { $0.count } }

    /// Every live channel (for metrics).
    var allChannels: [ServerChannel] { self.channels.withLock { Array($0.values) } }

    /// Forgets deleted channels whose grace period is over (their segments are freed with them).
    func purgeExpiredTombstones() {
        let now = self.clock.now
        // The channels are released outside the lock: the last reference frees their segments.
        let expired: [Tombstone] = self.tombstones.withLock { tombstones in
            let expired = tombstones.values.filter { now - $0.deletedAt >= self.gracePeriod }
            if !expired.isEmpty { tombstones = tombstones.filter { now - $0.value.deletedAt < self.gracePeriod } }
            return expired
        }
        _ = expired
    }

    /// Removes and closes a channel. Returns `false` if there was none.
    func remove(named name: String) -> Bool {
        let removed = self.channels.withLock { $0.removeValue(forKey: name) }
        guard let removed else { return false }
        removed.close()
        if !name.hasPrefix("_") { self.changeFeed?.removed(name) }
        if self.gracePeriod > .zero {
            let now = self.clock.now
            self.tombstones.withLock { tombstones in
                // Expired tombstones go now, not at the next sweep: a server cycling many channels holds at most
                // one grace period's worth of deleted segments.
                tombstones = tombstones.filter { now - $0.value.deletedAt < self.gracePeriod }
                tombstones[name] = Tombstone(channel: removed, deletedAt: now)
            }
        }
        return true
    }

    /// Removes and closes channels whose last segment started `timeout` ago or longer; `_`-prefixed names are
    /// exempt (§6). Returns the names removed.
    func sweep(idleFor timeout: Duration) -> [String] {
        let cutoff = self.clock.now - timeout
        let removed: [ServerChannel] = self.channels.withLock { channels in
            let stale = channels.values.filter { !$0.name.hasPrefix("_") && $0.lastSegmentStart <= cutoff }
            for channel in stale { channels.removeValue(forKey: channel.name) }
            return stale
        }
        for channel in removed {
            channel.close()
            self.changeFeed?.removed(channel.name)
        }
        self.purgeExpiredTombstones()
        return removed.map(\.name)
    }

    /// Ends segments whose writer vanished more than `timeout` ago and was not replaced by a re-send.
    func closeAbandonedSegments(olderThan timeout: Duration) {
        let now = self.clock.now
        for channel in self.allChannels { channel.closeAbandonedSegments(olderThan: timeout, now: now) }
    }

    /// Closes every channel (server shutdown).
    func closeAll() {
        let all = self.channels.withLock { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
        self.tombstones.withLock { $0 = [:] }
        for channel in all { channel.close() }
        self.changeFeed?.close()
    }

    var count: Int { self.channels.withLock { $0.count } }
}
