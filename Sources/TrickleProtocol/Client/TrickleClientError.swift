import TrickleRelaySupport
/// An error from a trickle client (``TricklePublisher``, ``TrickleSubscriber``).
///
/// Compare errors by ``code``; ``message`` says what was expected and what arrived.
public struct TrickleClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidURL, channelNotFound, channelClosed, unexpectedStatus, retriesExhausted, segmentFailed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The channel URL is not usable.
        public static let invalidURL = Code(.invalidURL)
        /// The server answered 404: the channel does not exist (never created, deleted, or swept).
        public static let channelNotFound = Code(.channelNotFound)
        /// The channel was closed (`Lp-Trickle-Closed`), or the client was closed.
        public static let channelClosed = Code(.channelClosed)
        /// The server answered a status the protocol does not allow here.
        public static let unexpectedStatus = Code(.unexpectedStatus)
        /// The configured number of consecutive failures was reached.
        public static let retriesExhausted = Code(.retriesExhausted)
        /// The upload of the current segment failed part-way; the next write opens a new segment.
        public static let segmentFailed = Code(.segmentFailed)

        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What was expected and what arrived.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code): \(self.message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
