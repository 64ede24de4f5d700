import TrickleProtocol

extension ClientApplication.Summary {
    /// The client's closing line: how it ended, what the dispatchers counted, and what the spool, the metrics
    /// endpoint and Kafka did — every count that says where an event went.
    public func text(sink: EgressSinkSpecification) -> String {
        let counters = self.counters
        let ending: String
        if max(self.channelsFollowed, self.subscriptions.count) > 1 {
            // Counted by the daemon, not from the list: the list keeps the last 1,000 that are not running.
            let followed = max(self.channelsFollowed, self.subscriptions.count)
            let finished = self.channelsFollowed > 0 ? self.channelsEnded : self.subscriptions.filter { $0.state == "finished" }.count
            ending = "\(finished) of \(followed) channels ended"
        } else {
            ending = self.end.map { $0 == TrickleSubscriber.EndOfStream.closed ? "the channel was closed" : "the channel does not exist (404)" } ?? "stopped"
        }
        var text =
            "client ended (\(ending)): \(counters.lines) lines, \(counters.telemetry) telemetry to the \(sink) sink, malformed \(counters.malformed), non-object \(counters.nonObject), telemetry without an object event \(counters.telemetryWithoutObjectEvent), oversize \(counters.oversize), sink failures \(counters.sinkFailures) (\(counters.sinkFailedEvents) events not delivered), segments lost \(counters.segmentsLost)"
        if counters.skippedOnResume > 0 { text += ", already spooled before the restart \(counters.skippedOnResume)" }
        if let spool = self.spool {
            text +=
                "; spool: appended \(spool.appended), refused (full) \(spool.overflowed), refused (write failed: disk full?) \(spool.writeFailed), torn lines \(spool.tornLines), corrupt lines \(spool.corruptLines), state file failures \(spool.stateFileFailures), left \(spool.bytes) bytes"
        }
        if let reporter = self.reporter {
            text +=
                "; endpoint: sent \(reporter.sent), rejected (400) \(reporter.rejected), too large \(reporter.tooLarge), overflowed \(reporter.overflowed), unsendable \(reporter.unsendable), waiting \(reporter.buffered)"
        }
        // Channels the client could not reach when it stopped, with the cause in words (a certificate problem).
        let unreachable = self.subscriptions.compactMap { snapshot in snapshot.connectionProblem.map { "\(snapshot.id): \($0)" } }
        if !unreachable.isEmpty {
            text += "; not reachable: " + unreachable.prefix(5).joined(separator: "; ") + (unreachable.count > 5 ? " (and \(unreachable.count - 5) more)" : "")
        }
        if let kafka = self.kafka {
            text +=
                "; kafka: acknowledged \(kafka.acknowledged), produced \(kafka.produced), retried \(kafka.retried), in flight (left in the spool) \(kafka.inFlight), errors \(kafka.errors.isEmpty ? "none" : kafka.errors.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", "))"
        }
        return text
    }

    /// Channels that answered 404 before any data: most likely a mistyped events URL, not a session that ended.
    public var neverSeenChannels: [String] {
        self.subscriptions.filter { $0.end == "not_found" && $0.lines == 0 && $0.gaps == 0 && $0.segments == 0 }.map(\.eventsURL)
    }

    /// Every channel was never seen (the client exits 3).
    public var everyChannelNeverSeen: Bool {
        !self.subscriptions.isEmpty && self.neverSeenChannels.count == self.subscriptions.count && self.end != nil
    }
}
