import ClientEgress
import Foundation
import NIOCore

/// Spool throughput: appending envelopes in dispatcher-sized batches, then reading them back and acknowledging.
func benchmarkSpool() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-bench-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let spool = try Spool(configuration: .init(directory: directory, maximumBytes: 4 << 30), logger: logger)
    let envelope = ByteBuffer(
        string: #"{"id":"6f1c2b7e-3d2a-4f0e-9a51-000000000000","type":"stream_trace","timestamp":"1763769600123","data":{"type":"stream_heartbeat","client_source":"scope","session_id":"sess-42","fps_in":29.97,"frames_out":298,"vram_used_mb":31744}}"#
    )
    let batch = (0..<500).map { TelemetryRecord(envelope: envelope, seq: 1, lineNumber: $0 + 1) }
    let batches = 2_000
    let clock = ContinuousClock()
    var start = clock.now
    for _ in 0..<batches { await spool.append(batch) }
    let appended = clock.now - start
    let bytes = spool.stats.bytes
    var cursor = spool.deliveryStart
    var read = 0
    start = clock.now
    while true {
        let next = try await spool.read(from: cursor, maximumRecords: 500)
        if next.records.isEmpty { break }
        read += next.records.count
        cursor = next.next
        await spool.acknowledge(through: cursor)
    }
    let delivered = clock.now - start
    let events = batches * batch.count
    print(
        String(
            format: "spool: append %.0f MB/s (%.2f M events/s, batches of 500); read back + acknowledge %.0f MB/s (%.2f M events/s); %d of %d read, %d bytes left",
            megabytesPerSecond(bytes, appended), Double(events) / appended.seconds / 1e6,
            megabytesPerSecond(bytes, delivered), Double(read) / delivered.seconds / 1e6, read, events, spool.stats.bytes
        )
    )
    spool.close()
}
