#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TrickleRelaySupport

/// A pipe whose reader reads only when asked: until then the kernel's 64 KiB fill, and every write after blocks —
/// a stopped local reader (`| less` left on its first page, a paused terminal).
public final class StalledPipe: Sendable {
    /// Where the writer under test writes.
    public let writeEnd: Int32
    private let readEnd: Int32
    private let received = RelayMutex<[UInt8]>([])
    private let writeEndOpen = RelayMutex(true)

    public init() throws {
        var descriptors: [Int32] = [0, 0]
        guard pipe(&descriptors) == 0 else { throw PipeFailed(errno: errno) }
        self.readEnd = descriptors[0]
        self.writeEnd = descriptors[1]
        _ = fcntl(self.readEnd, F_SETFL, fcntl(self.readEnd, F_GETFL) | O_NONBLOCK)
    }

    /// The reader comes back for a moment: takes what the pipe holds now.
    public func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(self.readEnd, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            self.received.withLock { $0 += buffer[0..<count] }
        }
    }

    /// Everything read so far, as text.
    public var text: String { String(decoding: self.received.withLock { $0 }, as: UTF8.self) }

    /// Closes the write end (the writer under test is done), then reads the rest.
    public func finish() {
        let wasOpen = self.writeEndOpen.withLock { open in
            defer { open = false }
            return open
        }
        if wasOpen { close(self.writeEnd) }
        self.readAvailable()
    }

    deinit {
        if self.writeEndOpen.withLock({ $0 }) { close(self.writeEnd) }
        close(self.readEnd)
    }

    public struct PipeFailed: Error {
        public var errno: Int32
    }
}
