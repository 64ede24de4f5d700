import AsyncHTTPClient
import ClientEgress
import Foundation
import HTTPTypes
import Logging
import NIOCore
import Synchronization
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

private func record(_ id: Int, seq: Int = 0, size: Int = 0) -> TelemetryRecord {
    let padding = String(repeating: "x", count: size)
    return TelemetryRecord(
        envelope: ByteBuffer(string: #"{"id":"s\#(id)","type":"stream_trace","data":{"type":"metric","v":1.0e3,"é":"\u00e9","p":"\#(padding)"}}"#),
        seq: seq,
        lineNumber: id + 1
    )
}

private func withSpoolDirectory(_ body: (String) async throws -> Void) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-test-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try await body(directory)
}

private func segmentFiles(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".jsonl") }.sorted()
}

/// A sink that holds what it is given and settles when the test says so (as the metrics reporter does when its
/// endpoint answers). Exports past `blockingAfter` records wait for ``release()`` (a sink whose buffer is full).
private final class HeldSettlingSink: SettlingEgressSink {
    let received = RelayMutex<[TelemetryRecord]>([])
    private let handler = RelayMutex<(@Sendable (Int) -> Void)?>(nil)
    private let blockingAfter: Int
    private let released = OneShotSignal<Void>()
    /// Exports refused (thrown, nothing taken) before the first one taken.
    private let refusals: RelayMutex<Int>

    init(blockingAfter: Int = .max, refusingFirst refusals: Int = 0) {
        self.blockingAfter = blockingAfter
        self.refusals = RelayMutex(refusals)
    }

    struct Refused: Error {}

    nonisolated(nonsending) func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        let refused = self.refusals.withLock { refusals in
            defer { refusals = max(refusals - 1, 0) }
            return refusals > 0
        }
        if refused { throw Refused() }
        let count = self.received.withLock { received in
            received += records
            return received.count
        }
        if count > self.blockingAfter { _ = await self.released.wait() }
    }

    func release() { self.released.fulfill(()) }

    func onSettled(_ handler: @escaping @Sendable (Int) -> Void) { self.handler.withLock { $0 = handler } }
    var maximumUnsettledRecords: Int { 100 }
    func settle(_ count: Int) { self.handler.withLock { $0 }?(count) }
    func forceFlush() async throws {}
    func shutdown() async {}
}

@Suite("Spool", .timeLimit(.minutes(1)))
struct SpoolTests {
    @Test("records read back byte-exact, in order, across segment files; acknowledged segments are deleted")
    func appendReadAcknowledge() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1_000), logger: quietLogger)
            let records = (0..<40).map { record($0) }
            for chunk in stride(from: 0, to: 40, by: 4) { #expect(await spool.append(records[chunk..<chunk + 4]) == 4) }
            #expect(segmentFiles(directory).count > 3)

            var cursor = spool.deliveryStart
            var read: [TelemetryRecord] = []
            while true {
                let batch = try await spool.read(from: cursor, maximumRecords: 7)
                if batch.records.isEmpty { break }
                read += batch.records
                cursor = batch.next
            }
            #expect(read.map { String(buffer: $0.envelope) } == records.map { String(buffer: $0.envelope) })
            #expect(read.map(\.lineNumber) == records.map(\.lineNumber))
            await spool.acknowledge(through: cursor)
            #expect(segmentFiles(directory).count == 1)  // only a new, empty open segment is left
            #expect(spool.stats.segmentsDeleted > 3)
            #expect(spool.stats.bytes == 0)
            spool.close()
        }
    }

    @Test("a reopened spool resumes: unacknowledged records again, the read position, nothing acknowledged")
    func reopen() async throws {
        try await withSpoolDirectory { directory in
            do {
                let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 600), logger: quietLogger)
                await spool.append((0..<10).map { record($0, seq: 7) })
                let first = try await spool.read(from: spool.deliveryStart, maximumRecords: 4)
                await spool.acknowledge(through: first.next)
                spool.close()
            }
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 600), logger: quietLogger)
            #expect(spool.resumePosition == .init(seq: 7, line: 10))
            let rest = try await spool.read(from: spool.deliveryStart, maximumRecords: 100)
            #expect(rest.records.map(\.lineNumber) == Array(5...10))
            spool.close()
        }
    }

    @Test("kill -9 between acknowledgements (the state file is written at most once a second): the next start begins after the last acknowledged record")
    func crashAfterAcknowledgement() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1 << 20), logger: quietLogger)
            await spool.append((0..<10).map { record($0, seq: 3) })
            let first = try await spool.read(from: spool.deliveryStart, maximumRecords: 2)
            await spool.acknowledge(through: first.next)  // writes the state file
            let second = try await spool.read(from: first.next, maximumRecords: 5)
            await spool.acknowledge(through: second.next)  // within the second: the `delivered` file only
            // The directory as a kill -9 now would leave it (the lock is the process's, not the files').
            let crashed = directory + "-crashed"
            try FileManager.default.copyItem(atPath: directory, toPath: crashed)
            defer { try? FileManager.default.removeItem(atPath: crashed) }
            spool.close()
            let restarted = try Spool(configuration: .init(directory: crashed, segmentBytes: 1 << 20), logger: quietLogger)
            let rest = try await restarted.read(from: restarted.deliveryStart, maximumRecords: 100)
            #expect(rest.records.map(\.lineNumber) == Array(8...10), "nothing acknowledged is delivered again")
            restarted.close()
            // A torn or foreign `delivered` file is no cursor: the state file's serves (duplicates, never a loss).
            try Data("not a cursor".utf8).write(to: URL(fileURLWithPath: crashed + "/delivered"))
            let fallback = try Spool(configuration: .init(directory: crashed, segmentBytes: 1 << 20), logger: quietLogger)
            let again = try await fallback.read(from: fallback.deliveryStart, maximumRecords: 100)
            #expect(again.records.first.map(\.lineNumber).map { $0 <= 8 } == true)
            #expect(again.records.last?.lineNumber == 10)
            fallback.close()
        }
    }

    @Test("a torn last line (a crash mid-append) is cut off and counted; everything before it survives")
    func tornLine() async throws {
        try await withSpoolDirectory { directory in
            do {
                let spool = try Spool(configuration: .init(directory: directory), logger: quietLogger)
                await spool.append((0..<5).map { record($0, seq: 3) })
                spool.close()
            }
            let last = directory + "/" + segmentFiles(directory).last!
            let handle = try #require(FileHandle(forWritingAtPath: last))
            handle.seekToEndOfFile()
            handle.write(Data(#"{"seq":3,"line":6,"event":{"id":"s5","ty"#.utf8))
            handle.closeFile()

            let spool = try Spool(configuration: .init(directory: directory), logger: quietLogger)
            #expect(spool.stats.tornLines == 1)
            #expect(spool.resumePosition == .init(seq: 3, line: 5))
            let all = try await spool.read(from: spool.deliveryStart, maximumRecords: 100)
            #expect(all.records.count == 5)
            #expect(spool.stats.corruptLines == 0)
            await spool.append([record(9, seq: 4)])  // appends after a repair are readable
            #expect(try await spool.read(from: all.next, maximumRecords: 10).records.map(\.lineNumber) == [10])
            spool.close()
        }
    }

    @Test("records longer than one read (256 KiB) are read back whole")
    func longRecords() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory), logger: quietLogger)
            let records = [record(0), record(1, size: 300_000), record(2), record(3, size: 1_000_000)]
            await spool.append(records)
            var cursor = spool.deliveryStart
            var read: [TelemetryRecord] = []
            while true {
                let batch = try await spool.read(from: cursor, maximumRecords: 2)
                if batch.records.isEmpty { break }
                read += batch.records
                cursor = batch.next
            }
            #expect(read.map { String(buffer: $0.envelope) } == records.map { String(buffer: $0.envelope) })
            #expect(spool.stats.corruptLines == 0)
            spool.close()
        }
    }

    @Test("a corrupt line in the middle is skipped and counted, the lines around it are read")
    func corruptLine() async throws {
        try await withSpoolDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data((#"{"seq":1,"line":1,"event":{"id":"a"}}"# + "\n" + "garbage\n" + #"{"seq":1,"line":3,"event":{"id":"b"}}"# + "\n").utf8)
                .write(to: URL(fileURLWithPath: directory + "/0000000000000000.jsonl"))
            let spool = try Spool(configuration: .init(directory: directory), logger: quietLogger)
            let all = try await spool.read(from: spool.deliveryStart, maximumRecords: 10)
            #expect(all.records.map { String(buffer: $0.envelope) } == [#"{"id":"a"}"#, #"{"id":"b"}"#])
            #expect(spool.stats.corruptLines == 1)
            spool.close()
        }
    }

    @Test("a disk that is full (ENOSPC): appends are refused and counted apart, one warning for the state, not one per append")
    func diskFull() async throws {
        try await withSpoolDirectory { directory in
            let logs = CapturedLogs()
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 64), logger: logs.logger())
            // The next segment file is /dev/full: once the spool rotates to it, every write fails with ENOSPC, as
            // on a full disk.
            try FileManager.default.createSymbolicLink(atPath: directory + "/0000000000000001.jsonl", withDestinationPath: "/dev/full")
            #expect(await spool.append([record(1000, size: 100)]) == 1)  // fills segment 0: the spool rotates
            for batch in 0..<20 {
                #expect(await spool.append((0..<5).map { record(batch * 5 + $0) }) == 0)
            }
            #expect(spool.stats.writeFailed == 100 && spool.stats.appended == 1 && spool.stats.overflowed == 0, "\(spool.stats)")
            let warnings = logs.lines.filter { $0.contains("spool cannot append") }
            #expect(warnings.count == 1, "\(logs.lines)")
            spool.close()
        }
    }

    @Test("the size bound refuses new records and counts them")
    func bounded() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, maximumBytes: 2_000), logger: quietLogger)
            let accepted = await spool.append((0..<50).map { record($0, size: 20) })
            #expect(accepted > 0 && accepted < 50)
            #expect(spool.stats.overflowed == 50 - accepted)
            #expect(spool.stats.bytes <= 2_000)
            let all = try await spool.read(from: spool.deliveryStart, maximumRecords: 100)
            await spool.acknowledge(through: all.next)
            #expect(await spool.append([record(99)]) == 1)  // delivered space is free again
            spool.close()
        }
    }

    @Test("one client per spool directory")
    func locked() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory), logger: quietLogger)
            #expect {
                try Spool(configuration: .init(directory: directory), logger: quietLogger)
            } throws: { error in
                (error as? SpoolError)?.code == .inUse && "\(error)".contains("in use by another client")
            }
            spool.close()
            let again = try Spool(configuration: .init(directory: directory), logger: quietLogger)
            again.close()
        }
    }

    @Test("SpooledSink → MetricsReporter: 500s are ridden out; segments are deleted only after the endpoint accepted them")
    func spooledReporter() async throws {
        let endpoint = ScriptedEndpoint { _, index in (index < 2 ? .internalServerError : .ok, [:]) }
        try await withSpoolDirectory { directory in
            try await endpoint.run { url in
                try await HTTPClient.withHTTPClient { client in
                    let reporter = MetricsReporter(
                        configuration: .init(url: url, flushInterval: .milliseconds(20), retryBackoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(40))),
                        httpClient: client,
                        apiKey: { "k" },
                        logger: quietLogger
                    )
                    let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 2_000), logger: quietLogger)
                    let sink = SpooledSink(spool: spool, downstream: reporter, batchRecords: 50, logger: quietLogger)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await sink.run() }
                        try await sink.export((0..<300).map { record($0) })
                        #expect(spool.stats.appended == 300)
                        try await sink.forceFlush()
                        #expect(Set(endpoint.acceptedIDs) == Set((0..<300).map { "s\($0)" }))
                        #expect(spool.acknowledged == spool.end)
                        // The delivered segments' files go on the thread pool just after the cursor is recorded.
                        try await waitUntil("the delivered segment files are deleted") { segmentFiles(directory).count == 1 }
                        await sink.shutdown()
                        try await group.waitForAll()
                    }
                }
            }
        }
    }

    @Test("SpooledSink: records the sink settled are recorded the moment it settles them, part of a batch too: a kill -9 right after re-delivers none of them")
    func settledRecordedAtOnce() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1 << 20), logger: quietLogger)
            // The delivery loop is held in its third export (so it cannot be the one that acknowledges).
            let held = HeldSettlingSink(blockingAfter: 20)
            let sink = SpooledSink(spool: spool, downstream: held, batchRecords: 10, logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sink.run() }
                try await sink.export((0..<25).map { record($0) })
                try await waitUntil("every record handed to the sink behind") { held.received.withLock { $0.count } == 25 }
                // The endpoint accepted the first 13 (a request that ends inside the second batch of 10). The
                // directory is copied the moment the sink says so, as a kill -9 right then would leave it.
                held.settle(13)
                let crashed = directory + "-crashed"
                try FileManager.default.copyItem(atPath: directory, toPath: crashed)
                defer { try? FileManager.default.removeItem(atPath: crashed) }
                held.release()
                await sink.shutdown()
                try await group.waitForAll()
                let restarted = try Spool(configuration: .init(directory: crashed, segmentBytes: 1 << 20), logger: quietLogger)
                defer { restarted.close() }
                let rest = try await restarted.read(from: restarted.deliveryStart, maximumRecords: 100)
                #expect(rest.records.map(\.lineNumber) == Array(14...25), "the 13 settled records are not delivered again")
            }
        }
    }

    @Test("SpooledSink: what the endpoint never accepted is delivered by the next start")
    func undeliveredSurvivesRestart() async throws {
        let accepting = ScriptedEndpoint { _, _ in (.ok, [:]) }
        let failing = ScriptedEndpoint { _, _ in (.serviceUnavailable, [:]) }
        try await withSpoolDirectory { directory in
            let logs = CapturedLogs()
            func run(_ endpoint: ScriptedEndpoint, _ body: @escaping @Sendable (SpooledSink) async throws -> Void) async throws {
                try await endpoint.run { url in
                    try await HTTPClient.withHTTPClient { client in
                        let reporter = MetricsReporter(
                            configuration: .init(url: url, flushInterval: .milliseconds(20), retryBackoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(20))),
                            httpClient: client,
                            apiKey: { "k" },
                            logger: quietLogger
                        )
                        let sink = SpooledSink(spool: try Spool(configuration: .init(directory: directory), logger: quietLogger), downstream: reporter, logger: logs.logger())
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask { try await sink.run() }
                            try await body(sink)
                            await sink.shutdown()
                            try await group.waitForAll()
                        }
                    }
                }
            }
            try await run(failing) { sink in
                try await sink.export((0..<20).map { record($0) })
                try await waitUntil("a failed attempt") { failing.requests.count >= 1 }
            }
            // The closing line must not claim delivery of what the endpoint never accepted.
            let closed = try #require(logs.lines.first { $0.contains("spool closed") })
            #expect(closed.contains("spool.settled=0") && closed.contains("spool.unsettled=20"), "\(closed)")
            try await run(accepting) { sink in
                try await sink.forceFlush()
            }
            #expect(Set(accepting.acceptedIDs) == Set((0..<20).map { "s\($0)" }))
        }
    }

    @Test("SpooledSink → MetricsReporter: after a crash with a request in flight, the next start sends that same request first, alone (same events, same Idempotency-Key), though more records wait behind it")
    func inFlightRequestSentAgainAsItWas() async throws {
        let refusing = ScriptedEndpoint { _, _ in (.serviceUnavailable, [:]) }
        let accepting = ScriptedEndpoint { _, _ in (.ok, [:]) }
        try await withSpoolDirectory { directory in
            let crashed = directory + "-crashed"
            defer { try? FileManager.default.removeItem(atPath: crashed) }
            /// A client's run: a spool in `directory` delivering to `endpoint` through a reporter; `body` exports.
            @Sendable func run(
                _ endpoint: ScriptedEndpoint,
                spoolIn directory: String,
                retryingAfter backoff: Duration,
                _ body: @escaping @Sendable (SpooledSink) async throws -> Void
            ) async throws {
                try await endpoint.run { url in
                    try await HTTPClient.withHTTPClient { client in
                        let reporter = MetricsReporter(
                            configuration: .init(url: url, flushInterval: .milliseconds(20), retryBackoff: Backoff(initial: backoff, maximum: backoff)),
                            httpClient: client,
                            apiKey: { "k" },
                            logger: quietLogger
                        )
                        let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 4_000), logger: quietLogger)
                        let sink = SpooledSink(spool: spool, downstream: reporter, batchRecords: 50, logger: quietLogger)
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask { try await sink.run() }
                            try await body(sink)
                            await sink.shutdown()
                            try await group.waitForAll()
                        }
                    }
                }
            }
            // A long back-off after the 503: that request stays the one in flight while more records arrive.
            try await run(refusing, spoolIn: directory, retryingAfter: .seconds(30)) { sink in
                try await sink.export((0..<37).map { record($0) })
                try await waitUntil("the first request") { refusing.requests.count == 1 }
                try await sink.export((37..<300).map { record($0) })
                // The directory as a kill -9 would leave it, the request unanswered as far as the client knows.
                try FileManager.default.copyItem(atPath: directory, toPath: crashed)
            }
            let inFlight = try #require(refusing.requests.first?.0)
            #expect(inFlight.ids == (0..<37).map { "s\($0)" })
            try await run(accepting, spoolIn: crashed, retryingAfter: .milliseconds(10)) { sink in
                try await sink.forceFlush()
            }
            let first = try #require(accepting.requests.first?.0)
            #expect(first.idempotencyKey == inFlight.idempotencyKey)
            #expect(first.ids == inFlight.ids, "the first request after the restart carries \(first.ids.count) events, not the 37 in flight")
            #expect(accepting.acceptedIDs.sorted() == (0..<300).map { "s\($0)" }.sorted(), "every record once")
        }
    }

    @Test("a spool whose delivered cursor is in the first, 24-byte format (an older version) resumes from it; a torn cursor file falls back to the state file")
    func legacyDeliveredCursor() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1 << 20), logger: quietLogger)
            await spool.append((0..<10).map { record($0) })
            let start = spool.deliveryStart
            let batch = try await spool.read(from: start, maximumRecords: 10)
            spool.close()
            // segment, offset and a check word, little-endian, as the first format wrote them.
            let cursor = batch.ends[3]
            let (segment, offset) = (UInt64(cursor.segment), UInt64(cursor.offset))
            var bytes: [UInt8] = []
            for word in [segment, offset, segment &* 0x9E37_79B9_7F4A_7C15 ^ offset ^ 0x7472_6963_6B6C_6521] {
                withUnsafeBytes(of: word.littleEndian) { bytes += $0 }
            }
            func reopen(delivered: [UInt8]) throws -> Spool {
                try Data(delivered).write(to: URL(fileURLWithPath: directory + "/delivered"))
                return try Spool(configuration: .init(directory: directory, segmentBytes: 1 << 20), logger: quietLogger)
            }
            var torn = bytes
            torn[9] ^= 0xFF
            let fallback = try reopen(delivered: torn)
            #expect(fallback.deliveryStart == start, "a torn cursor file reads as none: the state file's cursor serves")
            fallback.close()
            let reopened = try reopen(delivered: bytes)
            defer { reopened.close() }
            #expect(reopened.deliveryStart == cursor)
            #expect(reopened.inFlightAtStart == nil)
            let rest = try await reopened.read(from: reopened.deliveryStart, maximumRecords: 10)
            #expect(rest.records.map(\.lineNumber) == Array(5...10))
        }
    }

    @Test("a restart that finds an empty segment behind the open one (a crash right after a rotation): once the sink settled everything, the spool is wholly acknowledged, and a flush returns")
    func emptySegmentLeftByACrash() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1_000), logger: quietLogger)
            await spool.append((0..<20).map { record($0) })  // one append past the segment size: a rotation follows
            let crashed = directory + "-crashed"
            defer { try? FileManager.default.removeItem(atPath: crashed) }
            try FileManager.default.copyItem(atPath: directory, toPath: crashed)
            spool.close()
            #expect(segmentFiles(crashed).count == 2, "the full segment and the empty one opened after it")
            let restarted = try Spool(configuration: .init(directory: crashed, segmentBytes: 1_000), logger: quietLogger)
            let held = HeldSettlingSink()
            let sink = SpooledSink(spool: restarted, downstream: held, batchRecords: 20, logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sink.run() }
                try await waitUntil("every record handed to the sink behind") { held.received.withLock { $0.count } == 20 }
                held.settle(20)
                try await waitUntil(timeout: .seconds(10), "the whole spool acknowledged") { restarted.acknowledged >= restarted.end }
                try await sink.forceFlush()
                await sink.shutdown()
                try await group.waitForAll()
            }
            #expect(segmentFiles(crashed).count == 1, "only the open segment is left")
        }
    }

    @Test("SpooledSink: an export the sink behind refuses is handed on again, and the records it did take settle the spool to its end")
    func refusedExportHandedOnAgain() async throws {
        try await withSpoolDirectory { directory in
            let spool = try Spool(configuration: .init(directory: directory, segmentBytes: 1 << 20), logger: quietLogger)
            let held = HeldSettlingSink(refusingFirst: 2)
            let sink = SpooledSink(spool: spool, downstream: held, batchRecords: 10, retryBackoff: Backoff(initial: .milliseconds(5), maximum: .milliseconds(5)), logger: quietLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sink.run() }
                try await sink.export((0..<25).map { record($0) })
                try await waitUntil("every record handed to the sink behind") { held.received.withLock { $0.count } == 25 }
                #expect(held.received.withLock { $0.map(\.lineNumber) } == Array(1...25), "in order, each once")
                #expect(sink.deliveryFailures == 2)
                held.settle(25)
                try await waitUntil("the whole spool acknowledged") { spool.acknowledged >= spool.end }
                #expect(sink.unsettledRecords == 0)
                await sink.shutdown()
                try await group.waitForAll()
            }
        }
    }
}
