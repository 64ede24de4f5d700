#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import TrickleProtocol
import TrickleRelaySupport

/// Standard output: whole records, and `false` once its reader has gone (EPIPE) — never a trap.
enum StandardOutput {
    @discardableResult
    static func write(_ buffer: ByteBuffer) -> Bool {
        guard buffer.readableBytes > 0 else { return !StandardStreamWriter.standardOutput.isClosed }
        return StandardStreamWriter.standardOutput.write(buffer.readableBytesView)
    }

    @discardableResult
    static func write(_ text: String) -> Bool {
        StandardStreamWriter.standardOutput.write(text)
    }
}

/// Writes a line to standard error (messages for people; never payloads), in order with the log's lines through
/// their queue (``StandardErrorQueue``). A closed standard error drops them.
enum StandardError {
    static func write(_ text: String) {
        self.writeRaw(text + "\n")
    }

    static func writeRaw(_ text: String) {
        StandardErrorQueue.shared.write(text)
    }
}

/// Thrown by a command whose output is its product (`subscribe`) when standard output's reader went away.
struct StandardOutputClosed: Error {}
