#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import NIOCore
import Synchronization
import TrickleRelaySupport

/// A progress line for a replay (`\rreplay:  42% (420 of 1000 MB)`), at most five times a second, shown only
/// when `isShown` (the executable: standard error is a terminal) and the input is larger than 4 MB.
public final class ReplayProgress: Sendable {
    /// No progress line.
    public static let silent = ReplayProgress(files: [], isShown: false, show: { _ in })

    private let total: Int
    private let isShown: Bool
    private let show: @Sendable (String) -> Void
    private let state = RelayMutex((done: 0, lastShown: ContinuousClock.now))

    /// - Parameters:
    ///   - files: The files to be read (their sizes make the total).
    ///   - isShown: Whether to show anything at all.
    ///   - show: Writes the raw text (carriage returns and an erase sequence included).
    public init(files: [String], isShown: Bool, show: @escaping @Sendable (String) -> Void) {
        let total = files.reduce(0) { sum, file in sum + Self.size(of: file) }
        self.total = total
        self.isShown = isShown && total > 4_000_000
        self.show = show
    }

    private static func size(of file: String) -> Int {
        let attributes = try? FileManager.default.attributesOfItem(atPath: file)
        return (attributes?[.size] as? Int) ?? (attributes?[.size] as? UInt64).map { Int(clamping: $0) } ?? 0
    }

    /// Counts the bytes of `chunks` as they are read.
    public func counting<Chunks: AsyncSequence<ByteBuffer, any Error>>(_ chunks: Chunks) -> AsyncThrowingMapSequence<Chunks, ByteBuffer> {
        chunks.map { chunk in
            self.add(chunk.readableBytes)
            return chunk
        }
    }

    private func add(_ bytes: Int) {
        guard self.isShown else { return }
        let line: String? = self.state.withLock { state in
            state.done += bytes
            guard ContinuousClock.now - state.lastShown > .milliseconds(200) else { return nil }
            state.lastShown = .now
            let percent = String(100 * state.done / max(self.total, 1))
            let padding = String(repeating: " ", count: max(0, 3 - percent.count))
            return "\rreplay: \(padding)\(percent)% (\(state.done / 1_000_000) of \(self.total / 1_000_000) MB)"
        }
        if let line { self.show(line) }
    }

    /// Erases the progress line.
    public func finish() {
        if self.isShown { self.show("\r\u{1B}[K") }
    }
}
