public import TrickleProtocol
import TrickleRelaySupport

/// One events channel a ``ClientDaemon`` follows: where it is, how it is labelled, where reading starts, and
/// who asked for it.
public struct ChannelSubscription: Sendable, Hashable {
    /// Who added a subscription; decides what a configuration reload may remove and what is persisted.
    public enum Origin: String, Sendable, Hashable {
        /// A command-line flag: lives as long as the process.
        case flag
        /// The configuration file: added and removed by a reload.
        case config
        /// The control API: persisted beside the spool, so a restarted daemon follows it again.
        case api
    }

    /// The id (``SubscriptionID``): derived from the URL unless given.
    public var id: String
    /// The channel.
    public var eventsURL: TrickleChannelURL
    /// The label of the channel's events on the SSE stream (`?session=`) and in listings. Default: the
    /// channel's name without a trailing `-events`.
    public var sessionID: String
    /// Where reading starts when the spool has no read position for the channel. Default `latest`.
    public var start: TrickleSubscriber.StartPosition
    public var origin: Origin

    /// Creates a subscription.
    ///
    /// - Throws: ``SubscriptionError`` when `sessionID` is not 1…128 printable characters, or `id` is not
    ///   ``SubscriptionID`` shaped.
    public init(
        eventsURL: TrickleChannelURL,
        sessionID: String? = nil,
        start: TrickleSubscriber.StartPosition = .latest,
        origin: Origin = .flag,
        id: String? = nil
    ) throws(SubscriptionError) {
        if let sessionID {
            guard (1...128).contains(sessionID.utf8.count), sessionID.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f })
            else { throw SubscriptionError(.invalid, "session_id must be 1 to 128 printable characters") }
        }
        if let id, !SubscriptionID.isValid(id) {
            throw SubscriptionError(.invalid, "id must be 1 to \(SubscriptionID.maximumLength) of A-Z a-z 0-9 . _ -, got \(id.prefix(80))")
        }
        self.id = id ?? SubscriptionID.derived(from: eventsURL)
        self.eventsURL = eventsURL
        self.sessionID = sessionID ?? Self.defaultSessionID(eventsURL)
        self.start = start
        self.origin = origin
    }

    /// The channel's name without a trailing `-events` (the orchestrator names events channels
    /// `<stream>-events`).
    static func defaultSessionID(_ url: TrickleChannelURL) -> String {
        let name = url.channelName
        return name.hasSuffix("-events") && name.count > 7 ? String(name.dropLast(7)) : name
    }
}

/// A subscription request the daemon refuses, with what to do about it.
public struct SubscriptionError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// A field is malformed (→ 400).
        case invalid
        /// The channel is followed already (→ 409).
        case duplicate
        /// No such subscription (→ 404).
        case notFound
        /// The daemon is stopping or at its limit (→ 503).
        case unavailable
    }

    public var code: Code
    public var description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}
