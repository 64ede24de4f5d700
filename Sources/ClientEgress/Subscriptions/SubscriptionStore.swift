#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TrickleProtocol
import TrickleRelaySupport

/// The subscriptions added through the control API, kept beside the spool so a restarted daemon (even after
/// `kill -9`) follows them again: `subscriptions.jsonl`, a journal of one JSON line per change
/// (`{"op":"add","id":…,"events_url":…,"session_id":…,"start":…}` or `{"op":"remove","id":…}`), readable only by
/// its owner (URLs may carry `jwt=` tokens).
///
/// Adding or removing costs one appended line whatever the number followed. When the journal holds more than
/// twice the live subscriptions (and at least 256 lines), it is compacted: the live ones are written aside,
/// synced, and renamed over it — a crash at any point leaves the old journal or the new one, never a mix. A last
/// line cut short by a crash is ignored. A `subscriptions.json` from an earlier version is read once and replaced
/// by the journal.
public final class SubscriptionStore: Sendable {
    private struct Entry: Codable {
        var op: String?
        var id: String
        var events_url: String?
        var session_id: String?
        var start: String?
    }

    private struct LegacyFile: Codable {
        var subscriptions: [Entry]
    }

    private struct State {
        /// The journal, open for appending (after the first write or load).
        var descriptor: Int32 = -1
        /// Live subscriptions' ids and journal lines, in the order added; `nil` where one was removed since
        /// compaction.
        var lines: [(id: String, line: [UInt8])?] = []
        var index: [String: Int] = [:]
        /// Lines in the journal file.
        var journalLines = 0
    }

    /// The journal's path.
    public let path: String
    /// The earlier versions' file, migrated on ``load()``.
    public let legacyPath: String
    private let directory: String
    private let state = RelayMutex(State())

    /// The most bytes a journal may have (10,000 subscriptions with long URLs are a few MB).
    static let maximumJournalBytes = 256 * 1024 * 1024

    /// A store at `directory/subscriptions.jsonl`.
    public init(directory: String) {
        self.directory = directory
        self.path = directory + "/subscriptions.jsonl"
        self.legacyPath = directory + "/subscriptions.json"
    }

    deinit {
        let descriptor = self.state.withLock { $0.descriptor }
        if descriptor >= 0 { close(descriptor) }
    }

    /// The number of subscriptions stored.
    public var count: Int { self.state.withLock { $0.index.count } }

    /// The stored subscriptions (origin ``ChannelSubscription/Origin/api``), in the order added; none when there is
    /// no journal yet. Compacts the journal when it is mostly history.
    ///
    /// - Throws: ``SubscriptionError`` naming the file and the line when it cannot be read.
    public func load() throws(SubscriptionError) -> [ChannelSubscription] {
        var subscriptions: [String: ChannelSubscription] = [:]
        var state = State()
        if let bytes = try self.readJournal() {
            var lineNumber = 0
            var start = 0
            while start < bytes.count {
                guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }  // cut short: ignored
                lineNumber += 1
                let line = Array(bytes[start..<newline])
                start = newline + 1
                state.journalLines += 1
                guard !line.isEmpty else { continue }
                let entry: Entry
                do {
                    entry = try JSONDecoder().decode(Entry.self, from: Data(line))
                } catch {
                    throw SubscriptionError(.invalid, "\(self.path): line \(lineNumber) is not a subscription record; move the file aside to start without its subscriptions")
                }
                switch entry.op {
                case "add":
                    let subscription = try self.subscription(entry, at: "\(self.path): line \(lineNumber)")
                    if let existing = state.index[entry.id] { state.lines[existing] = nil }
                    state.index[entry.id] = state.lines.count
                    state.lines.append((entry.id, line))
                    subscriptions[entry.id] = subscription
                case "remove":
                    if let existing = state.index.removeValue(forKey: entry.id) { state.lines[existing] = nil }
                    subscriptions[entry.id] = nil
                default:
                    throw SubscriptionError(.invalid, "\(self.path): line \(lineNumber): op must be add or remove")
                }
            }
        } else if let legacy = try self.readLegacy() {
            for (position, entry) in legacy.enumerated() {
                let subscription = try self.subscription(entry, at: "\(self.legacyPath): subscriptions[\(position)]")
                if let existing = state.index[entry.id] { state.lines[existing] = nil }
                state.index[entry.id] = state.lines.count
                state.lines.append((entry.id, Self.addLine(subscription)))
                subscriptions[entry.id] = subscription
            }
            state.journalLines = Int.max  // written anew below
        }
        let ordered = state.lines.compactMap { $0.flatMap { subscriptions[$0.id] } }
        let result: SubscriptionError? = self.state.withLock { current in
            if current.descriptor >= 0 { close(current.descriptor) }
            current = state
            if current.journalLines == Int.max || self.needsCompaction(current) {
                do throws(SubscriptionError) {
                    try self.compact(&current)
                } catch {
                    return error
                }
            }
            return nil
        }
        if let result { throw result }
        if FileManager.default.fileExists(atPath: self.legacyPath) { unlink(self.legacyPath) }
        return ordered
    }

    /// Records that `subscription` (origin api) is followed: one line appended.
    ///
    /// - Throws: ``SubscriptionError`` `.unavailable` when the journal cannot be written.
    public func recordAdded(_ subscription: ChannelSubscription) throws(SubscriptionError) {
        guard subscription.origin == .api else { return }
        let line = Self.addLine(subscription)
        try self.append(line) { state in
            if let existing = state.index[subscription.id] { state.lines[existing] = nil }
            state.index[subscription.id] = state.lines.count
            state.lines.append((subscription.id, line))
        }
    }

    /// Records that subscription `id` is no longer followed (removed, or its channel ended).
    ///
    /// - Throws: ``SubscriptionError`` `.unavailable` when the journal cannot be written.
    public func recordRemoved(id: String) throws(SubscriptionError) {
        guard self.state.withLock({ $0.index[id] != nil }) else { return }
        try self.append(Self.encode(Entry(op: "remove", id: id))) { state in
            if let existing = state.index.removeValue(forKey: id) { state.lines[existing] = nil }
        }
    }

    /// Replaces the stored subscriptions with `subscriptions` (those of origin `api`): a compaction.
    ///
    /// - Throws: ``SubscriptionError`` when the journal cannot be written.
    public func save(_ subscriptions: [ChannelSubscription]) throws(SubscriptionError) {
        var fresh = State()
        for subscription in subscriptions where subscription.origin == .api {
            if let existing = fresh.index[subscription.id] { fresh.lines[existing] = nil }
            fresh.index[subscription.id] = fresh.lines.count
            fresh.lines.append((subscription.id, Self.addLine(subscription)))
        }
        let result: SubscriptionError? = self.state.withLock { state in
            do throws(SubscriptionError) {
                if state.descriptor >= 0 { close(state.descriptor) }
                state = fresh
                try self.compact(&state)
                return nil
            } catch {
                return error
            }
        }
        if let result { throw result }
    }

    // MARK: Writing

    private func append(_ line: [UInt8], update: (inout State) -> Void) throws(SubscriptionError) {
        let result: SubscriptionError? = self.state.withLock { state in
            do throws(SubscriptionError) {
                if state.descriptor < 0 { state.descriptor = try self.openJournal() }
                try self.write(line + [UInt8(ascii: "\n")], to: state.descriptor)
                state.journalLines += 1
                update(&state)
                // The record is written: a compaction that fails (no room for the copy) is tried again at the
                // next change, and never fails this one.
                if self.needsCompaction(state) { try? self.compact(&state) }
                return nil
            } catch {
                return error
            }
        }
        if let result { throw result }
    }

    private func needsCompaction(_ state: State) -> Bool {
        state.journalLines >= 256 && state.journalLines > 2 * state.index.count
    }

    /// Writes the live lines aside, syncs them, renames them over the journal and appends to the new one.
    private func compact(_ state: inout State) throws(SubscriptionError) {
        try self.createDirectory()
        let live = state.lines.compactMap { $0 }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(live.reduce(0) { $0 + $1.line.count + 1 })
        for entry in live {
            bytes += entry.line
            bytes.append(UInt8(ascii: "\n"))
        }
        let temporary = self.path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw self.unavailable(temporary) }
        do throws(SubscriptionError) {
            try self.write(bytes, to: descriptor)
            guard fsync(descriptor) == 0 else { throw self.unavailable(temporary) }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        close(descriptor)
        guard rename(temporary, self.path) == 0 else {
            let error = self.unavailable(self.path)
            unlink(temporary)
            throw error
        }
        let directory = open(self.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
        if state.descriptor >= 0 { close(state.descriptor) }
        state.descriptor = -1  // reopened below, or by the next append if that fails: never a stale number
        state.descriptor = try self.openJournal()
        state.lines = live
        state.index = [:]
        for (position, entry) in live.enumerated() { state.index[entry.id] = position }
        state.journalLines = live.count
    }

    private func openJournal() throws(SubscriptionError) -> Int32 {
        try self.createDirectory()
        let descriptor = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw self.unavailable(self.path) }
        return descriptor
    }

    private func createDirectory() throws(SubscriptionError) {
        do throws(PrivateDirectory.CreationError) {
            try PrivateDirectory.create(self.directory)
        } catch {
            throw SubscriptionError(.unavailable, "cannot write \(self.path): cannot create its directory (\(error))")
        }
    }

    /// One `write` per record where the kernel takes it whole (a crash then leaves whole lines, or a cut-short last one).
    private func write(_ bytes: [UInt8], to descriptor: Int32) throws(SubscriptionError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw self.unavailable(self.path) }
            written += count
        }
    }

    private func unavailable(_ path: String) -> SubscriptionError {
        SubscriptionError(.unavailable, "cannot write \(path): \(String(cString: strerror(errno)))")
    }

    // MARK: Reading

    private func readJournal() throws(SubscriptionError) -> [UInt8]? {
        unlink(self.path + ".tmp")  // a compaction a crash interrupted: the journal itself is whole
        guard FileManager.default.fileExists(atPath: self.path) else { return nil }
        do {
            return try BoundedFile.read(path: self.path, maximumBytes: Self.maximumJournalBytes)
        } catch {
            throw SubscriptionError(.invalid, "\(error)")
        }
    }

    private func readLegacy() throws(SubscriptionError) -> [Entry]? {
        guard FileManager.default.fileExists(atPath: self.legacyPath) else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path: self.legacyPath, maximumBytes: Self.maximumJournalBytes)
        } catch {
            throw SubscriptionError(.invalid, "\(error)")
        }
        do {
            return try JSONDecoder().decode(LegacyFile.self, from: Data(bytes)).subscriptions
        } catch {
            throw SubscriptionError(.invalid, "\(self.legacyPath) is not a subscriptions file (\(error)); move it aside to start without its subscriptions")
        }
    }

    private func subscription(_ entry: Entry, at place: String) throws(SubscriptionError) -> ChannelSubscription {
        do {
            guard let start = TrickleSubscriber.StartPosition(parsing: entry.start ?? "") else {
                throw SubscriptionError(.invalid, "start must be latest, next or a seq number")
            }
            let url = try TrickleChannelURL(entry.events_url ?? "")
            return try ChannelSubscription(eventsURL: url, sessionID: entry.session_id ?? "", start: start, origin: .api, id: entry.id)
        } catch {
            throw SubscriptionError(.invalid, "\(place): \(error)")
        }
    }

    private static func addLine(_ subscription: ChannelSubscription) -> [UInt8] {
        Self.encode(
            Entry(op: "add", id: subscription.id, events_url: subscription.eventsURL.url(), session_id: subscription.sessionID, start: subscription.start.description)
        )
    }

    private static func encode(_ entry: Entry) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(entry)) ?? Data())
    }
}
