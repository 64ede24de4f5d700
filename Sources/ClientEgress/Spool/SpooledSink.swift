import DequeModule
public import Logging
import ServiceLifecycle
import Synchronization
import TrickleProtocol
public import TrickleRelaySupport

/// Puts a ``Spool`` in front of a sink that can fail remotely (the metrics reporter, Kafka): ``export(_:)``
/// returns once the records are on disk, and ``run()`` delivers them from the spool to the sink behind it,
/// deleting spool segments only once that sink has settled (accepted, or dropped and reported) everything in
/// them. A crash loses nothing that reached the spool; a restart delivers the rest (at-least-once).
///
/// ``run()`` runs the sink behind too (its sending loop), and stops it after the last delivery. ``run()``
/// returns after ``shutdown()``: hand the `SpooledSink` to a ``ClientDaemon`` (it runs the sink and calls
/// `shutdown()` after its last dispatch), not the sink behind it.
public final class SpooledSink: EgressSink {
    /// A batch read from the spool and handed to the sink behind: the ordinal of its first record among all
    /// handed on, the cursor its read began at, and the spool cursor after each of its records.
    private struct HandedBatch {
        var firstOrdinal: Int
        var start: Spool.Cursor
        var ends: [Spool.Cursor]
        var next: Spool.Cursor
        var endOrdinal: Int { self.firstOrdinal + self.ends.count }
    }

    private struct State {
        /// Batches handed to the sink behind and not wholly settled, oldest first.
        var unsettled: Deque<HandedBatch> = []
        var exported = 0
        var settled = 0
        var deliveryFailures = 0
        var hasStarted = false
        /// Settled up to here and not acknowledged to the spool yet (the delivery loop does it, off the sink's
        /// callback: acknowledging writes and deletes files).
        var acknowledgeThrough: Spool.Cursor?
    }

    /// The spool.
    public let spool: Spool
    /// Records handed to the sink behind per export. Default 500.
    public let batchRecords: Int
    private let downstream: any EgressSink
    private let retryBackoff: Backoff
    private let logger: Logger
    private let state = RelayMutex(State())
    private let progress = GenerationSignal()
    private let stopRequested = OneShotSignal<Void>()
    private let finished = OneShotSignal<Void>()
    private let tracing: DeliveryTracing

    /// Creates a spooled sink delivering to `downstream`.
    public init(
        spool: Spool,
        downstream: any EgressSink,
        batchRecords: Int = 500,
        retryBackoff: Backoff = Backoff(initial: .seconds(1), maximum: .seconds(60)),
        tracing: DeliveryTracing = .off,
        logger: Logger
    ) {
        self.tracing = tracing
        self.spool = spool
        self.downstream = downstream
        self.batchRecords = batchRecords
        self.retryBackoff = retryBackoff
        self.logger = logger
    }

    /// Records handed to the sink behind and not settled yet.
    public var unsettledRecords: Int { self.state.withLock { $0.exported - $0.settled } }

    /// Times the sink behind threw on a delivery (it is retried with back-off).
    public var deliveryFailures: Int { self.state.withLock { $0.deliveryFailures } }

    // MARK: EgressSink

    /// Appends to the spool. Records the spool cannot take (full) are counted in its stats and reported there.
    nonisolated(nonsending) public func export(_ records: some Collection<TelemetryRecord> & Sendable) async throws {
        // One span per appended batch (the relay's own work: `trickle_relay.spool.write`).
        await self.tracing.withSpan("trickle_relay.spool.write", attributes: ["trickle_relay.events": records.count]) {
            await self.spool.append(records)
        }
    }

    /// Waits until everything in the spool was delivered and settled (or the task is cancelled).
    public func forceFlush() async throws {
        if self.spool.acknowledged < self.spool.end, self.stopRequested.value == nil {
            self.logger.info(
                "delivering what is left in the spool before stopping (SIGTERM stops now; the rest stays spooled)",
                metadata: ["spool.bytes": "\(self.spool.stats.bytes)"]
            )
        }
        while !Task.isCancelled {
            let seen = self.progress.generation
            if self.spool.acknowledged >= self.spool.end || self.stopRequested.value != nil { return }
            await self.progress.wait(past: seen)
        }
    }

    /// Stops delivering (what is left stays in the spool for the next start), stops the sink behind at once
    /// (a settling sink is not asked to flush: its records are in the spool), and closes the spool.
    public func shutdown() async {
        self.stopRequested.fulfill(())
        self.progress.advance()
        let started = self.state.withLock { $0.hasStarted }
        if started {
            _ = await self.finished.wait()
        } else {
            await self.downstream.shutdown()
            self.spool.close()
        }
    }

    // MARK: Delivery

    public func run() async throws {
        self.state.withLock { $0.hasStarted = true }
        defer { self.finished.fulfill(()) }
        let settling = self.downstream as? any SettlingEgressSink
        settling?.onSettled { [weak self] count in self?.settle(count) }
        settling?.onSending { [weak self] first, last in self?.noteSending(first: first, last: last) }
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.downstream.run() }
            // Delivery stops on `shutdown()` only (not on graceful shutdown): the owner calls it after its last
            // export, so nothing is appended to a closed spool.
            await self.deliver(window: settling.map { max($0.maximumUnsettledRecords / 2, 1) } ?? .max)
            if settling != nil {
                // Whatever the sink behind still holds is in the spool too: stop it now rather than let it retry
                // a failing endpoint for seconds (a request cut short is delivered again by the next start).
                group.cancelAll()
            }
            await self.downstream.shutdown()
            do {
                try await group.waitForAll()
            } catch is CancellationError {
            } catch {
                self.logger.warning("the sink behind the spool ended with an error", metadata: ["error": "\(error)"])
            }
        }
        await self.acknowledgeSettled()  // what the sink behind settled while it stopped
        self.spool.close()
        let stats = self.spool.stats
        // "Handed on" is what was read back and given to the sink; only "settled" records did reach their end
        // (accepted, or deliberately dropped and logged). The rest stay in the spool for the next start.
        let unsettled = self.unsettledRecords
        self.logger.info(
            "spool closed",
            metadata: [
                "spool.bytes": "\(stats.bytes)", "spool.handed_on": "\(stats.delivered)",
                "spool.settled": "\(max(stats.delivered - unsettled, 0))", "spool.unsettled": "\(unsettled)",
                "spool.overflowed": "\(stats.overflowed)",
            ]
        )
    }

    /// Reads the spool in order and hands batches to the sink behind, keeping at most `window` unsettled.
    private func deliver(window: Int) async {
        var cursor = self.spool.deliveryStart
        var failures = 0
        let settling = self.downstream is any SettlingEgressSink
        // The request in flight when the last run crashed goes first, alone and at once: the same records make the
        // same request (and `Idempotency-Key`), which an endpoint that honours the key applies once.
        var resendThrough = settling ? self.spool.inFlightAtStart : nil
        var resending = false
        // Cancelled: every wait below returns at once, so the loop must end rather than spin.
        while self.stopRequested.value == nil && !Task.isCancelled {
            let appended = self.spool.appendGeneration
            let settledGeneration = self.progress.generation
            await self.acknowledgeSettled()
            let room = window - self.unsettledRecords
            guard room > 0, !resending || room == window else {
                await self.progress.wait(past: settledGeneration)
                continue
            }
            resending = false
            var batch: Spool.ReadBatch
            do {
                batch = try await self.spool.read(from: cursor, maximumRecords: min(room, self.batchRecords))
            } catch {
                self.logger.error("spool read failed; retrying", metadata: ["error": "\(error)"])
                failures += 1
                await self.pause(self.retryBackoff.delay(forAttempt: failures - 1))
                continue
            }
            if batch.records.isEmpty {
                if cursor > self.spool.acknowledged, !settling {
                    await self.spool.acknowledge(through: cursor)  // the unreadable lines skipped at the end
                }
                await self.waitForAppend(past: appended, orProgressPast: settledGeneration)
                continue
            }
            if let end = resendThrough {
                resending = Self.keep(&batch, through: end)
                if resending || batch.next >= end { resendThrough = nil }
            }
            let count = batch.records.count
            // Noted before the export: the sink may send (and report the request) before it returns.
            let firstOrdinal: Int? = !settling ? nil : self.state.withLock { state in
                state.unsettled.append(HandedBatch(firstOrdinal: state.exported, start: cursor, ends: batch.ends, next: batch.next))
                defer { state.exported += count }
                return state.exported
            }
            do {
                try await self.downstream.export(batch.records)
                failures = 0
                if resending { try? await self.downstream.forceFlush() }
            } catch {
                if let firstOrdinal {
                    // Not taken (a sink that throws took none of the batch): it is read again.
                    self.state.withLock { state in
                        guard state.unsettled.last?.firstOrdinal == firstOrdinal else { return }
                        state.unsettled.removeLast()
                        state.exported -= count
                    }
                }
                resending = false
                failures += 1
                self.state.withLock { $0.deliveryFailures += 1 }
                self.logger.warning(
                    "egress sink failed a delivery from the spool; retrying",
                    metadata: ["sink.records": "\(batch.records.count)", "attempt": "\(failures)", "error": "\(error)"]
                )
                await self.pause(self.retryBackoff.delay(forAttempt: failures - 1))
                continue
            }
            cursor = batch.next
            if settling {
                self.settle(self.state.withLock { $0.settled })
            } else {
                await self.spool.acknowledge(through: batch.next)
                self.progress.advance()
            }
        }
    }

    /// Cuts `batch` after the last record that ends at or before `end` (the request in flight at the crash).
    /// - Returns: Whether the batch now ends exactly there (the request is complete: send it alone).
    private static func keep(_ batch: inout Spool.ReadBatch, through end: Spool.Cursor) -> Bool {
        let kept = batch.ends.firstIndex { $0 > end } ?? batch.ends.count
        guard kept > 0 else { return false }  // not a record boundary of ours: delivered as usual
        if kept < batch.ends.count {
            batch.records.removeLast(batch.records.count - kept)
            batch.ends.removeLast(batch.ends.count - kept)
            batch.next = batch.ends[kept - 1]
        }
        return batch.ends[kept - 1] == end
    }

    /// The sink behind is sending a request with the records of ordinals `first...last`: its extent in the spool
    /// is recorded, so a crash before the answer re-sends the same request.
    private func noteSending(first: Int, last: Int) {
        let extent: (start: Spool.Cursor, end: Spool.Cursor)? = self.state.withLock { state in
            guard let head = state.unsettled.first(where: { $0.firstOrdinal <= first && first < $0.endOrdinal }),
                let tail = state.unsettled.first(where: { $0.firstOrdinal <= last && last < $0.endOrdinal })
            else { return nil }
            let start = first == head.firstOrdinal ? head.start : head.ends[first - head.firstOrdinal - 1]
            return (start, tail.ends[last - tail.firstOrdinal])
        }
        if let extent { self.spool.recordInFlight(from: extent.start, through: extent.end) }
    }

    /// Acknowledges to the spool what the sink behind settled since the last call.
    private func acknowledgeSettled() async {
        guard let cursor = self.state.withLock({ state in defer { state.acknowledgeThrough = nil }; return state.acknowledgeThrough }) else { return }
        await self.spool.acknowledge(through: cursor)
        self.progress.advance()
    }

    /// The sink behind settled its first `count` records: the spool's `delivered` cursor is written at once, just
    /// after the last settled record (a crash from here on does not deliver them again); acknowledging, which
    /// deletes the files behind it, is the delivery loop's part (woken here).
    private func settle(_ count: Int) {
        let cursor: Spool.Cursor? = self.state.withLock { state in
            // (Also called by the delivery loop with the count so far: a sink may settle records of a batch before
            // the batch is noted here.)
            state.settled = max(state.settled, count)
            var cursor: Spool.Cursor?
            while let first = state.unsettled.first, first.endOrdinal <= state.settled {
                cursor = first.next
                state.unsettled.removeFirst()
            }
            if let first = state.unsettled.first, state.settled > first.firstOrdinal {
                cursor = first.ends[state.settled - first.firstOrdinal - 1]
            }
            if let cursor { state.acknowledgeThrough = max(state.acknowledgeThrough ?? cursor, cursor) }
            return cursor
        }
        if let cursor { self.spool.recordDelivered(through: cursor) }
        self.progress.advance()
    }

    private func waitForAppend(past generation: UInt64, orProgressPast progress: UInt64) async {
        await untilFirst(
            { await self.spool.waitForAppend(past: generation) },
            { await self.progress.wait(past: progress) },
            { _ = await self.stopRequested.wait() }
        )
    }

    private func pause(_ delay: Duration) async {
        await untilFirst({ try? await Task.sleep(for: delay) }, { _ = await self.stopRequested.wait() })
    }
}
