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

/// The subscriptions added through the control API, kept in `subscriptions.json` beside the spool so a
/// restarted daemon (even after `kill -9`) follows them again. The file is replaced atomically (written aside,
/// then renamed), readable only by its owner (URLs may carry `jwt=` tokens).
public final class SubscriptionStore: Sendable {
    private struct File: Codable {
        struct Entry: Codable {
            var id: String
            var events_url: String
            var session_id: String
            var start: String
        }

        var subscriptions: [Entry]
    }

    /// The file's path.
    public let path: String
    private let lock = Mutex(())

    /// A store at `directory/subscriptions.json`.
    public init(directory: String) {
        self.path = directory + "/subscriptions.json"
    }

    /// The stored subscriptions (origin ``ChannelSubscription/Origin/api``); none when there is no file yet.
    ///
    /// - Throws: ``SubscriptionError`` naming the file and the entry when it cannot be read.
    public func load() throws(SubscriptionError) -> [ChannelSubscription] {
        guard let data = FileManager.default.contents(atPath: self.path) else { return [] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw SubscriptionError(.invalid, "\(self.path) is not a subscriptions file (\(error)); move it aside to start without its subscriptions")
        }
        var subscriptions: [ChannelSubscription] = []
        for (index, entry) in file.subscriptions.enumerated() {
            do {
                guard let start = TrickleSubscriber.StartPosition(parsing: entry.start) else {
                    throw SubscriptionError(.invalid, "start must be latest, next or a seq number")
                }
                let url = try TrickleChannelURL(entry.events_url)
                subscriptions.append(try ChannelSubscription(eventsURL: url, sessionID: entry.session_id, start: start, origin: .api, id: entry.id))
            } catch {
                throw SubscriptionError(.invalid, "\(self.path): subscriptions[\(index)]: \(error)")
            }
        }
        return subscriptions
    }

    /// Replaces the file with `subscriptions` (those of origin `api`).
    ///
    /// - Throws: ``SubscriptionError`` when the file cannot be written.
    public func save(_ subscriptions: [ChannelSubscription]) throws(SubscriptionError) {
        let file = File(
            subscriptions: subscriptions.filter { $0.origin == .api }.map {
                File.Entry(id: $0.id, events_url: $0.eventsURL.url(), session_id: $0.sessionID, start: $0.start.description)
            }
        )
        let result: SubscriptionError? = self.lock.withLock { _ in
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let data = try encoder.encode(file)
                let directory = self.path.lastIndex(of: "/").map { String(self.path[..<$0]) } ?? "."
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                let temporary = self.path + ".tmp"
                guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]),
                    rename(temporary, self.path) == 0
                else { return SubscriptionError(.unavailable, "cannot write \(self.path): \(String(cString: strerror(errno)))") }
                return nil
            } catch {
                return SubscriptionError(.unavailable, "cannot write \(self.path): \(error)")
            }
        }
        if let result { throw result }
    }
}
