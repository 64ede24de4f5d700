public import NIOCore
import TrickleProtocol

/// A line the runner app writes on its events channel, classified by the rule the agent applies
/// (README "What the runner agent does with a line"):
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
        var type: Range<Int>?
        var event: JSONScanner.Member?
        let kind: Result<JSONScanner.ValueKind, JSONSyntaxError> = line.withUnsafeReadableBytes { bytes in
            do throws(JSONSyntaxError) {
                return .success(
                    try JSONScanner.scan(bytes) { key, member in
                        if key.elementsEqual("type".utf8), member.kind == .string { type = member.range }
                        if key.elementsEqual("event".utf8) { event = member }
                    }
                )
            } catch {
                return .failure(error)
            }
        }
        switch kind {
        case .failure(let error):
            self = .invalid(reason: "not valid JSON: \(error)")
            return
        case .success(let kind) where kind != .object:
            self = .invalid(reason: "expected a JSON object, got \(kind)")
            return
        case .success:
            break
        }
        let typeValue = type.map { range in
            String(decoding: line.readableBytesView[(line.readerIndex + range.lowerBound)..<(line.readerIndex + range.upperBound)], as: UTF8.self)
        }
        switch typeValue {
        case "\"telemetry\"":
            guard let event, event.kind == .object else {
                self = .invalid(reason: "a telemetry line needs an object \"event\"")
                return
            }
            self = .telemetry(line.getSlice(at: line.readerIndex + event.range.lowerBound, length: event.range.count)!)
        case "\"stream_trace\"" where TelemetryEnvelope.isEnvelope(line):
            self = .telemetry(line)
        default:
            self = .control(line)
        }
    }
}
