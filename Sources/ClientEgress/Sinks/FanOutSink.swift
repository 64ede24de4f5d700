/// Hands every batch to several sinks in order: the egress sink, and observers such as the SSE stream. A
/// failure of one does not keep the batch from the others; the first failure is rethrown.
public struct FanOutSink: EgressSink {
    public let sinks: [any EgressSink]

    public init(_ sinks: [any EgressSink]) {
        self.sinks = sinks
    }

    /// Runs every sink's background work; returns when all of them returned (after ``shutdown()``).
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for sink in self.sinks { group.addTask { try await sink.run() } }
        }
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        var failure: (any Error)?
        for sink in self.sinks {
            do { try await sink.export(records) } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }

    public func forceFlush() async throws {
        var failure: (any Error)?
        for sink in self.sinks {
            do { try await sink.forceFlush() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }

    public func shutdown() async {
        for sink in self.sinks { await sink.shutdown() }
    }
}
