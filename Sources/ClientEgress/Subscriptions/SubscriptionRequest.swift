import TrickleProtocol
import TrickleRelaySupport

/// The body of `POST /v1/subscriptions` and one entry of a configuration file's `subscriptions`:
/// `{"events_url": "...", "session_id": "...", "start": "latest|next|N"}` (`session_id` and `start` optional).
/// Every problem names its field.
enum SubscriptionRequest {
    static let fields: Set<String> = ["events_url", "session_id", "start"]

    /// Reads one subscription from a decoded JSON object.
    ///
    /// - Parameter path: How the object is named in messages (`subscriptions[2]`, or empty for a request body).
    static func subscription(from value: JSONValue, path: String, origin: ChannelSubscription.Origin) throws(SubscriptionError) -> ChannelSubscription {
        func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }
        guard let object = value.objectValue else {
            throw SubscriptionError(.invalid, "\(path.isEmpty ? "the body" : path) must be a JSON object like {\"events_url\":\"http://HOST:PORT/CHANNEL\"}")
        }
        if let unknown = object.keys.sorted().first(where: { !self.fields.contains($0) }) {
            throw SubscriptionError(.invalid, "\(field(unknown.prefix(64).description)): unknown field (expected events_url, session_id, start)")
        }
        guard let rawURL = object["events_url"] else { throw SubscriptionError(.invalid, "\(field("events_url")): missing") }
        guard let urlText = rawURL.stringValue else { throw SubscriptionError(.invalid, "\(field("events_url")): must be a string") }
        let url: TrickleChannelURL
        do {
            url = try TrickleChannelURL(urlText)
        } catch {
            throw SubscriptionError(.invalid, "\(field("events_url")): \(error.message)")
        }
        var sessionID: String?
        if let raw = object["session_id"], !raw.isNull {
            guard let text = raw.stringValue else { throw SubscriptionError(.invalid, "\(field("session_id")): must be a string") }
            sessionID = text
        }
        var start = TrickleSubscriber.StartPosition.latest
        if let raw = object["start"], !raw.isNull {
            let text: String
            switch raw {
            case .string(let string): text = string
            case .integer(let number): text = String(number)
            case .double(let number): text = String(number)
            default:
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
        let object: JSONValue
        do {
            object = try JSONValue.parse(body)
        } catch {
            throw SubscriptionError(.invalid, "the body is not JSON: expected {\"events_url\":\"http://HOST:PORT/CHANNEL\",\"session_id\"?:…,\"start\"?:\"latest\"}")
        }
        return try self.subscription(from: object, path: "", origin: .api)
    }
}
