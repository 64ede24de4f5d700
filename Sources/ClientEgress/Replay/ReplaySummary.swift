import NIOCore
import Synchronization
import TrickleRelaySupport

/// What a replay saw: events per type and per `data.type`, problems with file:line, duplicate envelope ids,
/// and the time span the envelopes cover.
public struct ReplaySummary: Sendable, Codable, Hashable {
    /// One skipped line or segment, located.
    public struct Problem: Sendable, Codable, Hashable {
        public var file: String
        public var line: Int?
        public var reason: String
        public var detail: String

        public init(file: String, line: Int?, reason: String, detail: String) {
            self.file = file
            self.line = line
            self.reason = reason
            self.detail = detail
        }
    }

    public var files: [String] = []
    public var lines = 0
    public var telemetry = 0
    public var byType: [String: Int] = [:]
    public var byDataType: [String: Int] = [:]
    public var malformed = 0
    public var nonObject = 0
    public var telemetryWithoutObjectEvent = 0
    public var oversize = 0
    /// Batches the sink failed to take, and the telemetry events in them (not delivered: a full disk, say).
    public var sinkFailures = 0
    public var sinkFailedEvents = 0
    /// The first ``maximumProblemsListed`` problems, in order; the rest are only counted.
    public var problems: [Problem] = []
    /// Problems per reason, all of them.
    public var problemsByReason: [String: Int] = [:]
    /// Problems beyond the listed ones.
    public var problemsNotListed = 0
    /// Distinct duplicated envelope ids, the first ``maximumDuplicateIDsListed`` of them.
    public var duplicateIDs: [String] = []
    /// Envelopes whose id was seen before (every repeat counts).
    public var duplicates = 0
    /// Distinct ids that were duplicated.
    public var distinctDuplicatedIDs = 0
    /// Unix ms of the earliest and latest envelope timestamps.
    public var firstTimestamp: Int64?
    public var lastTimestamp: Int64?

    /// How many problems a summary lists (a garbage file of any size gives a summary of bounded size).
    public static let maximumProblemsListed = 1_000
    /// How many distinct duplicated ids a summary lists.
    public static let maximumDuplicateIDsListed = 100

    public init() {}

    /// The summary of a finished replay: the dispatcher's counters, the problems it reported, and what the
    /// observing sink saw (duplicate ids, time span).
    public init(files: [String], counters: EventDispatcher.Counters, problems: ReplayProblems, observations: ReplayObservingSink) {
        self.files = files
        self.lines = counters.lines
        self.telemetry = counters.telemetry
        self.byType = counters.byType
        let seen = observations.observations
        // Counted by the observing sink, in the same walk that reads ids and timestamps (a dispatcher counting too
        // is added: the replay's own does not).
        self.byDataType = counters.byDataType.merging(seen.byDataType, uniquingKeysWith: +)
        self.malformed = counters.malformed
        self.nonObject = counters.nonObject
        self.telemetryWithoutObjectEvent = counters.telemetryWithoutObjectEvent
        self.oversize = counters.oversize
        self.sinkFailures = counters.sinkFailures
        self.sinkFailedEvents = counters.sinkFailedEvents
        let problems = problems.snapshot
        self.problems = problems.listed
        self.problemsByReason = problems.byReason
        self.problemsNotListed = problems.notListed
        self.duplicateIDs = seen.duplicateIDs
        self.duplicates = seen.duplicates
        self.distinctDuplicatedIDs = seen.distinctDuplicatedIDs
        self.firstTimestamp = seen.first
        self.lastTimestamp = seen.last
    }

    /// The covered time span in milliseconds (0 without timestamps).
    public var spanMilliseconds: Int64 {
        guard let first = self.firstTimestamp, let last = self.lastTimestamp else { return 0 }
        let (span, overflow) = last.subtractingReportingOverflow(first)
        return overflow ? 0 : span
    }
}

/// Wraps a sink: forwards every envelope and notes ids (to find duplicates) and timestamps (the time span).
public final class ReplayObservingSink: EgressSink {
    private struct State {
        var seen = FingerprintSet()
        var duplicated: Set<UInt64> = []
        var duplicateIDs: [String] = []
        var duplicates = 0
        var first: Int64?
        var last: Int64?
        var byDataType: [String: Int] = [:]
    }

    private let inner: any EgressSink
    private let state = RelayMutex(State())

    public init(forwardingTo inner: any EgressSink) {
        self.inner = inner
    }

    /// Duplicates (the first distinct ids, how many repeats, how many distinct ids) and the timestamp range.
    public var observations: (duplicateIDs: [String], duplicates: Int, distinctDuplicatedIDs: Int, first: Int64?, last: Int64?, byDataType: [String: Int]) {
        self.state.withLock { ($0.duplicateIDs, $0.duplicates, $0.duplicated.count, $0.first, $0.last, $0.byDataType) }
    }

    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let records = Array(records)
        // A large batch (a replay read as fast as it can be): the two halves' fields are read on two cores.
        let fields = await inTwoHalves(records, minimumCount: 128, { Self.fields(of: $0) }, joining: { $0.append($1) })
        let byDataType = fields.dataTypes.counts
        self.state.withLock { state in
            for (type, count) in byDataType { state.byDataType[type, default: 0] += count }
            for (index, (fingerprint, timestamp)) in zip(fields.fingerprints, fields.timestamps).enumerated() {
                // Ids are remembered as 64-bit fingerprints (FNV-1a), not strings: a gigabyte recording stays at
                // a few bytes per event. (Two different ids colliding is a one-in-10^7 chance at a million ids.)
                if let fingerprint {
                    if !state.seen.insert(fingerprint) {
                        state.duplicates += 1
                        if state.duplicated.insert(fingerprint).inserted, state.duplicateIDs.count < ReplaySummary.maximumDuplicateIDsListed,
                            let id = EnvelopeFields.stringBytes("id", of: records[index].envelope)
                        {
                            state.duplicateIDs.append(String(buffer: id))
                        }
                    }
                }
                if let timestamp {
                    state.first = min(state.first ?? timestamp, timestamp)
                    state.last = max(state.last ?? timestamp, timestamp)
                }
            }
        }
        try await self.inner.export(records)
    }

    /// The id fingerprints and timestamps of records, in order, and their counts per `data.type`.
    private struct Fields: Sendable {
        var fingerprints: [UInt64?] = []
        var timestamps: [Int64?] = []
        var dataTypes = DataTypeTally()

        mutating func append(_ later: Fields) {
            self.fingerprints.append(contentsOf: later.fingerprints)
            self.timestamps.append(contentsOf: later.timestamps)
            self.dataTypes.add(later.dataTypes)
        }
    }

    @inline(never)
    private static func fields(of records: ArraySlice<TelemetryRecord>) -> Fields {
        var fields = Fields()
        fields.fingerprints.reserveCapacity(records.count)
        fields.timestamps.reserveCapacity(records.count)
        for record in records {
            record.envelope.withUnsafeReadableBytes { bytes in
                let (id, timestamp, dataType) = EnvelopeFields.idTimestampAndDataType(in: bytes)
                fields.fingerprints.append(id.map { FNV1a.hash(UnsafeRawBufferPointer(rebasing: bytes[$0])) })
                fields.timestamps.append(timestamp)
                if let dataType { fields.dataTypes.count(UnsafeRawBufferPointer(rebasing: bytes[dataType])) }
            }
        }
        return fields
    }


    public func forceFlush() async throws { try await self.inner.forceFlush() }
    public func shutdown() async { await self.inner.shutdown() }
}

/// The problems a replay reports, kept bounded: the first ``ReplaySummary/maximumProblemsListed`` in full,
/// every one counted by reason.
public final class ReplayProblems: Sendable {
    private let state = RelayMutex((listed: [ReplaySummary.Problem](), byReason: [String: Int](), notListed: 0))

    public init() {}

    /// Notes one problem.
    public func add(_ problem: ReplaySummary.Problem) {
        self.state.withLock { state in
            state.byReason[problem.reason, default: 0] += 1
            if state.listed.count < ReplaySummary.maximumProblemsListed {
                state.listed.append(problem)
            } else {
                state.notListed += 1
            }
        }
    }

    /// The first problem, if any.
    public var first: ReplaySummary.Problem? { self.state.withLock { $0.listed.first } }

    /// What was noted so far.
    public var snapshot: (listed: [ReplaySummary.Problem], byReason: [String: Int], notListed: Int) { self.state.withLock { $0 } }
}
