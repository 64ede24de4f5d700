import Logging

/// swift-otel's diagnostic logger for the relay: the relay's own log handler, with the values swift-otel logs
/// when it applies an `OTEL_*` environment variable (`environment_value`, `previous_value`, `new_value`)
/// redacted for header variables — `OTEL_EXPORTER_OTLP_HEADERS` holds tokens, and a token never reaches a log line.
struct DiagnosticLogHandler: LogHandler {
    var upstream: any LogHandler

    var logLevel: Logger.Level {
        get { self.upstream.logLevel }
        set { self.upstream.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { self.upstream.metadata }
        set { self.upstream.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.upstream[metadataKey: key] }
        set { self.upstream[metadataKey: key] = newValue }
    }

    static let valueKeys = ["environment_value", "previous_value", "new_value"]

    func log(event: LogEvent) {
        var event = event
        var metadata = event.metadata ?? [:]
        let key = "\(metadata["environment_key"] ?? self.upstream[metadataKey: "environment_key"] ?? "")".uppercased()
        if key.contains("HEADER") || key.contains("TOKEN") || key.contains("KEY") {
            for name in Self.valueKeys where metadata[name] != nil || self.upstream[metadataKey: name] != nil {
                metadata[name] = "REDACTED"
            }
            event.metadata = metadata
        }
        self.upstream.log(event: event)
    }

    /// `logger` with its handler wrapped.
    static func wrapping(_ logger: Logger) -> Logger {
        let upstream = logger.handler
        return Logger(label: logger.label, factory: { _ in DiagnosticLogHandler(upstream: upstream) })
    }
}
