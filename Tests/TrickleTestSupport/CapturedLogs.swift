public import Logging
import Synchronization
import TrickleRelaySupport

/// Captures log messages (with metadata) in memory, per test.
public final class CapturedLogs: Sendable {
    private let entries = RelayMutex<[String]>([])

    public init() {}
    public var lines: [String] { self.entries.withLock { $0 } }

    public func logger() -> Logger {
        Logger(label: "test") { _ in CapturingHandler(store: self) }
    }

    func append(_ line: String) { self.entries.withLock { $0.append(line) } }

    struct CapturingHandler: LogHandler {
        let store: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
            self.store.append("\(event.level) \(event.message) \(metadata)")
        }
    }
}
