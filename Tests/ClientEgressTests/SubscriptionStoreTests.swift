#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport
@testable import ClientEgress

/// `SubscriptionStore` directly (issue #24): what the control API's subscriptions survive a restart as.
@Suite("SubscriptionStore: the API's subscriptions on disk")
struct SubscriptionStoreTests {
    func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subscriptions-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    @Test("saved and loaded back: only origin api, every field kept, the file owner-only")
    func roundTrip() throws {
        try withDirectory { directory in
            let store = SubscriptionStore(directory: directory)
            #expect(try store.load().isEmpty, "no file yet: nothing")
            let api = try ChannelSubscription(eventsURL: TrickleChannelURL("http://h:1/a-events?jwt=secret"), sessionID: "sess-a", start: .seq(12), origin: .api)
            let next = try ChannelSubscription(eventsURL: TrickleChannelURL("https://h/ai/trickle/b-events"), sessionID: "sess-b", start: .next, origin: .api)
            let flagged = try ChannelSubscription(eventsURL: TrickleChannelURL("http://h:1/c-events"), sessionID: "sess-c", start: .latest, origin: .flag)
            try store.save([api, flagged, next])
            let loaded = try store.load()
            #expect(loaded.map(\.id) == [api.id, next.id])
            #expect(loaded.map(\.sessionID) == ["sess-a", "sess-b"])
            #expect(loaded.map(\.start) == [.seq(12), .next])
            #expect(loaded.map { $0.eventsURL.url() } == [api.eventsURL.url(), next.eventsURL.url()], "the token stays with its URL")
            #expect(loaded.allSatisfy { $0.origin == .api })
            let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o077 } == 0, "URLs may carry jwt= tokens: owner only")
            try store.save([])
            #expect(try store.load().isEmpty)
        }
    }

    @Test("an earlier version's subscriptions.json, or a bad entry in it, is refused naming the file and the entry", arguments: [
        ("not json", "is not a subscriptions file"),
        (#"{"subscriptions":[{"id":"x","events_url":"ftp://h/a","session_id":"s","start":"latest"}]}"#, "subscriptions[0]"),
        (#"{"subscriptions":[{"id":"x","events_url":"http://h/a","session_id":"s","start":"soon"}]}"#, "start must be latest, next or a seq number"),
    ])
    func refused(text: String, message: String) throws {
        try withDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = SubscriptionStore(directory: directory)
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.legacyPath))
            #expect {
                try store.load()
            } throws: { error in
                (error as? SubscriptionError)?.code == .invalid && "\(error)".contains(store.legacyPath) && "\(error)".contains(message)
            }
        }
    }

    @Test("a directory that cannot be written: save fails with .unavailable, naming the file")
    func unwritable() throws {
        let store = SubscriptionStore(directory: "/proc/trickle-relay-cannot-write-here")
        #expect {
            try store.save([try ChannelSubscription(eventsURL: TrickleChannelURL("http://h/a-events"), sessionID: "s", start: .latest, origin: .api)])
        } throws: { error in
            (error as? SubscriptionError)?.code == .unavailable && "\(error)".contains("subscriptions.jsonl")
        }
    }

    private func subscription(_ index: Int) throws -> ChannelSubscription {
        try ChannelSubscription(eventsURL: TrickleChannelURL("http://h:1/s\(index)-events?jwt=t\(index)"), sessionID: "sess-\(index)", start: .seq(index), origin: .api)
    }

    private func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    @Test("adding or removing appends one line whatever the number stored; a restart reads them back in the order added")
    func journal() throws {
        try withDirectory { directory in
            let store = SubscriptionStore(directory: directory)
            #expect(try store.load().isEmpty)
            let subscriptions = try (0..<100).map(subscription)
            for subscription in subscriptions { try store.recordAdded(subscription) }
            #expect(try lines(store.path).count == 101, "one line per add (and the final newline)")
            try store.recordRemoved(id: subscriptions[10].id)
            try store.recordRemoved(id: "not-stored")  // nothing to record
            #expect(try lines(store.path).count == 102)
            try store.recordAdded(try ChannelSubscription(eventsURL: TrickleChannelURL("http://h:1/flag-events"), sessionID: "f", start: .latest, origin: .flag))
            #expect(try lines(store.path).count == 102, "only the API's subscriptions are stored")
            let restarted = SubscriptionStore(directory: directory)
            let loaded = try restarted.load()
            #expect(loaded.map(\.id) == subscriptions.filter { $0.id != subscriptions[10].id }.map(\.id))
            #expect(loaded.map { $0.eventsURL.url() } == subscriptions.filter { $0.id != subscriptions[10].id }.map { $0.eventsURL.url() })
            #expect(loaded.map(\.start) == subscriptions.filter { $0.id != subscriptions[10].id }.map(\.start))
            let attributes = try FileManager.default.attributesOfItem(atPath: store.path)
            #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o077 } == 0, "URLs may carry jwt= tokens: owner only")
        }
    }

    @Test("a journal that is mostly history is compacted: the live subscriptions only, in order, and appending goes on in the new file")
    func compaction() throws {
        try withDirectory { directory in
            let store = SubscriptionStore(directory: directory)
            let subscriptions = try (0..<400).map(subscription)
            for subscription in subscriptions { try store.recordAdded(subscription) }
            for subscription in subscriptions.prefix(350) { try store.recordRemoved(id: subscription.id) }
            let journal = try lines(store.path).filter { !$0.isEmpty }
            #expect(journal.count <= 2 * 50 + 256, "compacted (\(journal.count) lines)")
            #expect(journal.count < 750)
            try store.recordAdded(try subscription(1_000))
            let loaded = try SubscriptionStore(directory: directory).load()
            #expect(loaded.map(\.id) == (subscriptions.suffix(50).map(\.id) + [try subscription(1_000).id]))
            #expect(!FileManager.default.fileExists(atPath: store.path + ".tmp"))
        }
    }

    @Test("a compaction that cannot write its copy fails no add or remove; it is done at a later change")
    func compactionFails() throws {
        try withDirectory { directory in
            let store = SubscriptionStore(directory: directory)
            #expect(try store.load().isEmpty)
            let subscriptions = try (0..<400).map(subscription)
            try store.recordAdded(subscriptions[0])
            // Where the copy would go, something that cannot be opened for writing (even by root).
            try FileManager.default.createDirectory(atPath: store.path + ".tmp", withIntermediateDirectories: false)
            for subscription in subscriptions.dropFirst() { try store.recordAdded(subscription) }
            for subscription in subscriptions.prefix(350) { try store.recordRemoved(id: subscription.id) }
            #expect(try lines(store.path).filter { !$0.isEmpty }.count == 750, "not compacted, nothing refused")
            try FileManager.default.removeItem(atPath: store.path + ".tmp")
            try store.recordAdded(try subscription(1_000))
            #expect(try lines(store.path).filter { !$0.isEmpty }.count == 51, "compacted at the next change")
            #expect(try SubscriptionStore(directory: directory).load().map(\.id) == subscriptions.suffix(50).map(\.id) + [try subscription(1_000).id])
        }
    }

    @Test("a crash at any point leaves a readable journal: a last line cut short is ignored, a compaction's half-written file is discarded")
    func crashes() throws {
        try withDirectory { directory in
            let store = SubscriptionStore(directory: directory)
            let subscriptions = try (0..<3).map(subscription)
            for subscription in subscriptions { try store.recordAdded(subscription) }
            // kill -9 in the middle of an append (or of a compaction's write, before its rename).
            var journal = try Data(contentsOf: URL(fileURLWithPath: store.path))
            journal.append(Data(#"{"events_url":"http://h:1/cut-ev"#.utf8))
            try journal.write(to: URL(fileURLWithPath: store.path))
            try Data(#"{"events_url":"http://h:1/half"#.utf8).write(to: URL(fileURLWithPath: store.path + ".tmp"))
            let loaded = try SubscriptionStore(directory: directory).load()
            #expect(loaded.map(\.id) == subscriptions.map(\.id))
            #expect(!FileManager.default.fileExists(atPath: store.path + ".tmp"))
            // A complete line that is not a record is not guessed at: refused, naming the file and the line.
            try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: store.path))
            #expect {
                try SubscriptionStore(directory: directory).load()
            } throws: { error in
                "\(error)".contains(store.path) && "\(error)".contains("line 1")
            }
        }
    }

    @Test("an earlier version's subscriptions.json is read once and replaced by the journal")
    func migration() throws {
        try withDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = SubscriptionStore(directory: directory)
            let legacy = #"{"subscriptions":[{"id":"a","events_url":"http://h:1/a-events","session_id":"s","start":"latest"},{"id":"b","events_url":"http://h:1/b-events","session_id":"t","start":"7"}]}"#
            try Data(legacy.utf8).write(to: URL(fileURLWithPath: store.legacyPath))
            #expect(try store.load().map(\.id) == ["a", "b"])
            #expect(!FileManager.default.fileExists(atPath: store.legacyPath))
            let loaded = try SubscriptionStore(directory: directory).load()
            #expect(loaded.map(\.id) == ["a", "b"])
            #expect(loaded.map(\.start) == [.latest, .seq(7)])
        }
    }
}
