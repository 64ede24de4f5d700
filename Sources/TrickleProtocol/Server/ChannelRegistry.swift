import Synchronization

/// The channels of one embedded server, by name.
final class ChannelRegistry: Sendable {
    private let channels = Mutex<[String: ServerChannel]>([:])
    private let ringSize: Int

    init(ringSize: Int) {
        self.ringSize = ringSize
    }

    func channel(named name: String) -> ServerChannel? {
        self.channels.withLock { $0[name] }
    }

    /// Returns the channel, creating it when missing. `created` tells which happened.
    func channel(
        named name: String,
        creatingWith mimeType: String,
        now: ContinuousClock.Instant
    ) -> (channel: ServerChannel, created: Bool) {
        self.channels.withLock { channels in
            if let existing = channels[name] { return (existing, false) }
            let channel = ServerChannel(name: name, mimeType: mimeType, ringSize: self.ringSize, now: now)
            channels[name] = channel
            return (channel, true)
        }
    }

    /// Removes and closes a channel. Returns `false` if there was none.
    func remove(named name: String) -> Bool {
        let removed = self.channels.withLock { $0.removeValue(forKey: name) }
        removed?.close()
        return removed != nil
    }

    /// Removes and closes channels whose last segment started before `cutoff`; `_`-prefixed names are exempt
    /// (§6). Returns the names removed.
    func sweep(olderThan cutoff: ContinuousClock.Instant) -> [String] {
        let removed: [ServerChannel] = self.channels.withLock { channels in
            let stale = channels.values.filter { !$0.name.hasPrefix("_") && $0.lastSegmentStart < cutoff }
            for channel in stale { channels.removeValue(forKey: channel.name) }
            return stale
        }
        for channel in removed { channel.close() }
        return removed.map(\.name)
    }

    /// Closes every channel (server shutdown).
    func closeAll() {
        let all = self.channels.withLock { channels in
            defer { channels = [:] }
            return Array(channels.values)
        }
        for channel in all { channel.close() }
    }

    var count: Int { self.channels.withLock { $0.count } }
}
