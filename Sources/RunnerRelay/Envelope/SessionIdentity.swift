/// Who an event belongs to: stamped into envelopes that lack these fields.
public struct SessionIdentity: Sendable, Hashable {
    /// The session id (`data.session_id`).
    public var sessionID: String
    /// The connection id (`data.connection_id`), when known.
    public var connectionID: String?
    /// `data.client_source`. Default `scope`.
    public var clientSource: String

    public init(sessionID: String, connectionID: String? = nil, clientSource: String = "scope") {
        self.sessionID = sessionID
        self.connectionID = connectionID
        self.clientSource = clientSource
    }
}
