public import NIOCore
import TrickleProtocol
import TrickleRelaySupport

/// A line the runner app writes on its events channel, classified by the rule the agent applies
/// (docs/architecture.md, "What the runner agent does with a line"):
///
/// - `{"type":"telemetry","event":{…}}` → telemetry: the `event` object is relayed (stamped if it is not yet an
///   envelope);
/// - a bare top-level `stream_trace` envelope → telemetry, kept as is;
/// - any other JSON object → a control-path event, passed through unchanged and losslessly;
/// - anything else → invalid, reported with its reason.
public enum RunnerLine: Sendable {
    case telemetry(ByteBuffer)
    case control(ByteBuffer)
    case invalid(reason: String)

    /// Classifies one line (without its newline).
    public init(_ line: ByteBuffer) {
        let fields: EventsLineFields
        switch EventsLineFields.scan(line) {
        case .failure(let error):
            self = .invalid(reason: "not valid JSON: \(error)")
            return
        case .success(let scanned) where scanned.kind != .object:
            self = .invalid(reason: "expected a JSON object, got \(scanned.kind)")
            return
        case .success(let scanned):
            fields = scanned
        }
        if fields.type(is: "telemetry", in: line) {
            guard let event = fields.eventObject(in: line) else {
                self = .invalid(reason: "a telemetry line needs an object \"event\"")
                return
            }
            self = .telemetry(event)
        } else if fields.type(is: "stream_trace", in: line), TelemetryEnvelope.isEnvelope(line) {
            self = .telemetry(line)
        } else {
            self = .control(line)
        }
    }
}
