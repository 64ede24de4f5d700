import TrickleRelaySupport
/// A line the ``JSONLWriter`` refused, or a failure to publish it.
public struct JSONLWriterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case lineTooLarge, invalidJSON, notAnObject, containsNewline, closed, publishFailed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The line (with its newline) is larger than the segment cap: no reader with that cap could read it.
        public static let lineTooLarge = Code(.lineTooLarge)
        /// The line is not strict JSON (for example a bare `NaN`).
        public static let invalidJSON = Code(.invalidJSON)
        /// The line is JSON but not an object.
        public static let notAnObject = Code(.notAnObject)
        /// The line contains a raw newline byte.
        public static let containsNewline = Code(.containsNewline)
        /// The writer was closed.
        public static let closed = Code(.closed)
        /// The publisher failed (see ``JSONLWriterError/message``).
        public static let publishFailed = Code(.publishFailed)

        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// What was expected and what arrived.
    public var message: String
    /// The underlying publisher error, for `.publishFailed`.
    public var publisherError: TrickleClientError?

    public init(_ code: Code, _ message: String, publisherError: TrickleClientError? = nil) {
        self.code = code
        self.message = message
        self.publisherError = publisherError
    }

    public var description: String { "\(self.code): \(self.message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}
