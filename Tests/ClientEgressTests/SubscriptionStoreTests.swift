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

    @Test("a file that is not a subscriptions file, or a bad entry, is refused naming the file and the entry", arguments: [
        ("not json", "is not a subscriptions file"),
        (#"{"subscriptions":[{"id":"x","events_url":"ftp://h/a","session_id":"s","start":"latest"}]}"#, "subscriptions[0]"),
        (#"{"subscriptions":[{"id":"x","events_url":"http://h/a","session_id":"s","start":"soon"}]}"#, "start must be latest, next or a seq number"),
    ])
    func refused(text: String, message: String) throws {
        try withDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let store = SubscriptionStore(directory: directory)
            try Data(text.utf8).write(to: URL(fileURLWithPath: store.path))
            #expect {
                try store.load()
            } throws: { error in
                (error as? SubscriptionError)?.code == .invalid && "\(error)".contains(store.path) && "\(error)".contains(message)
            }
        }
    }

    @Test("a directory that cannot be written: save fails with .unavailable, naming the file")
    func unwritable() throws {
        let store = SubscriptionStore(directory: "/proc/trickle-relay-cannot-write-here")
        #expect {
            try store.save([try ChannelSubscription(eventsURL: TrickleChannelURL("http://h/a-events"), sessionID: "s", start: .latest, origin: .api)])
        } throws: { error in
            (error as? SubscriptionError)?.code == .unavailable && "\(error)".contains("subscriptions.json")
        }
    }
}
