import Foundation
import NIOCore
import TrickleProtocol

/// The events-line scan alone (validation and routing fields, ``EventsLineFields/scan(_:)``), on one core, over the
/// lines of a JSONL file: `scan [FILE]`, by default a replay recording made by `scripts/make-replay-recording.py`.
enum ScanBenchmark {
    static func run(arguments: [String]) throws {
        let path = arguments.first ?? "/tmp/replay200.jsonl"
        guard let data = FileManager.default.contents(atPath: path) else {
            print("scan: cannot read \(path) (make one: python3 scripts/make-replay-recording.py \(path))")
            return
        }
        var lines: [ByteBuffer] = []
        var start = data.startIndex
        for index in data.indices where data[index] == 0x0A {
            if index > start { lines.append(ByteBuffer(bytes: data[start..<index])) }
            start = index + 1
        }
        var best = Duration.seconds(3600)
        var valid = 0
        for _ in 0..<5 {
            valid = 0
            let started = ContinuousClock.now
            for line in lines {
                if case .success = EventsLineFields.scan(line) { valid += 1 }
            }
            best = min(best, ContinuousClock.now - started)
        }
        let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) / 1e18
        let rate = Double(data.count) / seconds / 1e9
        print("scan: \(lines.count) lines (\(valid) valid), \(data.count) bytes: best of 5 \(String(format: "%.1f", seconds * 1000)) ms, \(String(format: "%.2f", rate)) GB/s on one core")
    }
}
