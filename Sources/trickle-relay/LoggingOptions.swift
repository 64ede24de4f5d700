import ArgumentParser
import Logging
import TrickleRelaySupport

/// `--log-level`, shared by every subcommand; only the executable bootstraps logging.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. (env: TRICKLE_RELAY_LOG_LEVEL)")
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got \(logLevel)")
        }
    }

    /// Bootstraps swift-log to stderr (through its queue: a stopped reader never blocks a thread that logs) and
    /// returns a logger labelled `label`.
    func makeLogger(label: String) -> Logger {
        let environmentLevel = Environment.value("TRICKLE_RELAY_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:))
        let level = self.logLevel.flatMap(Logger.Level.init(rawValue:)) ?? environmentLevel ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler(label: label, stream: StandardErrorQueue.shared.textStream, metadataProvider: LoggingSystem.metadataProvider)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
