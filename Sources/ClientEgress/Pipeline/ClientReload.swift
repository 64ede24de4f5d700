import Logging

/// What a reload (SIGHUP, which the process traps and forwards) re-reads: the API key always; the configuration
/// file, when there is one, whose subscriptions replace the file's earlier ones. What the command line set stays
/// as it is; fields that need a restart are named, not silently ignored.
public struct ClientReload: Sendable {
    /// The configuration file, if the client was started with one.
    public var configurationFile: String?
    /// The file as it was read at start: a field that differs from it needs a restart.
    public var running: ClientConfigurationFile?
    /// Subscriptions named on the command line (`--events-url`): a reload never removes them.
    public var flaggedSubscriptions: Set<String>
    /// File fields the command line overrode (`sink`, `spool_dir`, `listen`, `api_key_file`): their file values
    /// are not applied and changing them is not reported.
    public var overriddenFields: Set<String>

    public init(
        configurationFile: String?,
        running: ClientConfigurationFile?,
        flaggedSubscriptions: Set<String>,
        overriddenFields: Set<String>
    ) {
        self.configurationFile = configurationFile
        self.running = running
        self.flaggedSubscriptions = flaggedSubscriptions
        self.overriddenFields = overriddenFields
    }

    /// What a reload did.
    public struct Outcome: Sendable, Equatable {
        /// The API key file to use from now on, when the configuration file names it (and the command line did not).
        public var apiKeyFile: String??
        public var added: [String] = []
        public var removed: [String] = []
        public var refused: [String] = []
        /// Changed fields that take effect at the next start.
        public var needRestart: [String] = []
        /// Why the file was refused (the running configuration stays), if it was.
        public var refusal: String?
    }
}

extension ClientApplication {
    /// Reloads: applies the configuration file's subscriptions (keeping the running configuration when the file
    /// is broken), then re-reads the API key. Logs what changed.
    /// - Parameter setAPIKeyFile: Called first when the file names another API key file (the key reader uses it).
    @discardableResult
    public func reload(_ reload: ClientReload, setAPIKeyFile: (String?) -> Void = { _ in }) -> ClientReload.Outcome {
        defer { self.reloadKey() }
        var outcome = ClientReload.Outcome()
        guard let path = reload.configurationFile else {
            self.logger.info("reload: re-reading the API key")
            return outcome
        }
        let file: ClientConfigurationFile
        do {
            file = try ClientConfigurationFile(path: path)
        } catch {
            self.logger.warning("reload: the configuration file was refused; the running configuration stays", metadata: ["error": "\(error)"])
            outcome.refusal = "\(error)"
            return outcome
        }
        if !reload.overriddenFields.contains("api_key_file") {
            outcome.apiKeyFile = .some(file.apiKeyFile)
            setAPIKeyFile(file.apiKeyFile)
        }
        let changes = self.daemon.replaceConfigured(with: file.subscriptions.filter { !reload.flaggedSubscriptions.contains($0.id) })
        (outcome.added, outcome.removed, outcome.refused) = changes
        let running = reload.running
        let fields: [(String, Bool)] = [
            ("sink", file.sink != running?.sink),
            ("spool_dir", file.spoolDirectory != running?.spoolDirectory),
            ("listen", file.listen != running?.listen),
        ]
        outcome.needRestart = fields.filter { $0.1 && !reload.overriddenFields.contains($0.0) }.map(\.0)
        self.logger.info(
            "reload: configuration reloaded",
            metadata: [
                "subscriptions.added": "\(changes.added.count)", "subscriptions.removed": "\(changes.removed.count)",
                "subscriptions.refused": "\(changes.refused)",
            ]
        )
        if !outcome.needRestart.isEmpty {
            self.logger.warning("reload: changed fields take effect at the next start", metadata: ["fields": "\(outcome.needRestart.joined(separator: ","))"])
        }
        return outcome
    }
}
