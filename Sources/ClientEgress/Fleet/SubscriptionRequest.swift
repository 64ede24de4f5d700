import Foundation
import TrickleProtocol

/// The body of `POST /v1/subscriptions` and one entry of a configuration file's `subscriptions`:
/// `{"events_url": "...", "session_id": "...", "start": "latest|next|N"}` (`session_id` and `start` optional).
/// Every problem names its field.
enum SubscriptionRequest {
    static let fields: Set<String> = ["events_url", "session_id", "start"]

    /// Reads one subscription from a decoded JSON object.
    ///
    /// - Parameter path: How the object is named in messages (`subscriptions[2]`, or empty for a request body).
    static func subscription(from object: Any, path: String, origin: ChannelSubscription.Origin) throws(SubscriptionError) -> ChannelSubscription {
        func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }
        guard let object = object as? [String: Any] else {
            throw SubscriptionError(.invalid, "\(path.isEmpty ? "the body" : path) must be a JSON object like {\"events_url\":\"http://HOST:PORT/CHANNEL\"}")
        }
        if let unknown = object.keys.sorted().first(where: { !self.fields.contains($0) }) {
            throw SubscriptionError(.invalid, "\(field(unknown.prefix(64).description)): unknown field (expected events_url, session_id, start)")
        }
        guard let rawURL = object["events_url"] else { throw SubscriptionError(.invalid, "\(field("events_url")): missing") }
        guard let urlText = rawURL as? String else { throw SubscriptionError(.invalid, "\(field("events_url")): must be a string") }
        let url: TrickleChannelURL
        do {
            url = try TrickleChannelURL(urlText)
        } catch {
            throw SubscriptionError(.invalid, "\(field("events_url")): \(error.message)")
        }
        var sessionID: String?
        if let raw = object["session_id"], !(raw is NSNull) {
            guard let text = raw as? String else { throw SubscriptionError(.invalid, "\(field("session_id")): must be a string") }
            sessionID = text
        }
        var start = TrickleSubscriber.StartPosition.latest
        if let raw = object["start"], !(raw is NSNull) {
            let text: String
            if let string = raw as? String {
                text = string
            } else if !isJSONBoolean(raw), let number = raw as? NSNumber {
                text = number.stringValue
            } else {
                throw SubscriptionError(.invalid, "\(field("start")): must be \"latest\", \"next\" or a seq number")
            }
            guard let parsed = TrickleSubscriber.StartPosition(parsing: text) else {
                throw SubscriptionError(.invalid, "\(field("start")): must be latest, next or a seq number 0…\(TrickleSeq.maximum), got \(text.prefix(40))")
            }
            start = parsed
        }
        do {
            return try ChannelSubscription(eventsURL: url, sessionID: sessionID, start: start, origin: origin)
        } catch {
            throw SubscriptionError(error.code, "\(field("session_id")): \(error.description)")
        }
    }

    /// Parses a request body.
    static func subscription(fromBody body: some Collection<UInt8>) throws(SubscriptionError) -> ChannelSubscription {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            throw SubscriptionError(.invalid, "the body is not JSON: expected {\"events_url\":\"http://HOST:PORT/CHANNEL\",\"session_id\"?:…,\"start\"?:\"latest\"}")
        }
        return try self.subscription(from: object, path: "", origin: .api)
    }
}

/// Whether a value from `JSONSerialization` is `true` or `false` (Foundation bridges 0 and 1 to `Bool` too, so
/// `is Bool` cannot tell).
func isJSONBoolean(_ value: Any) -> Bool {
    guard let number = value as? NSNumber else { return false }
    return String(cString: number.objCType) == "c"
}
