public import NIOCore

/// Writes one line per envelope: `TELEMETRY type=<data.type> id=<id> session=<session_id> relayed_via=trickle`.
///
/// Never the payload: only routing fields. Where the lines go is the caller's choice (stdout in the CLI).
public struct LogSink: EgressSink {
    private let write: @Sendable (String) -> Void

    /// Creates a sink that hands each line (with its newline) to `write`.
    public init(write: @escaping @Sendable (String) -> Void) {
        self.write = write
    }

    /// The log line for one envelope.
    public static func line(for envelope: ByteBuffer) -> String {
        let fields = EnvelopeFields(envelope)
        return "TELEMETRY type=\(fields.type ?? "-") id=\(fields.id ?? "-") session=\(fields.sessionID ?? "-") relayed_via=trickle"
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        var text = ""
        for record in records {
            text += Self.line(for: record.envelope)
            text += "\n"
        }
        if !text.isEmpty { self.write(text) }
    }

    public func forceFlush() async throws {}
    public func shutdown() async {}
}
