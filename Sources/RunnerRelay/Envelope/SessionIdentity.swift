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

    /// The longest session id accepted.
    public static let maximumSessionIDLength = 128

    /// Why `id` cannot be a session id, or `nil` when it can: 1–128 characters of `A–Z a–z 0–9 . _ : -`.
    ///
    /// A session id is a path segment of the ingest API (`/v1/sessions/{id}`) and goes into every envelope: a
    /// `/` made a session impossible to delete, and control characters would reach logs.
    public static func problem(withSessionID id: String) -> String? {
        guard !id.isEmpty else { return "session_id must not be empty" }
        guard id.utf8.count <= Self.maximumSessionIDLength else {
            return "session_id must be at most \(Self.maximumSessionIDLength) characters, got \(id.utf8.count)"
        }
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-")
        }
        return allowed ? nil : "session_id may hold only letters, digits and . _ : - (it is a URL path segment)"
    }
}
