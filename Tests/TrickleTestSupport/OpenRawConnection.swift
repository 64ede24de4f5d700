import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A raw loopback TCP connection held open between sends (a request written in parts, with a test acting in
/// between). Blocking socket calls run on a Dispatch thread, never on the concurrency pool.
public final class OpenRawConnection: Sendable {
    private let descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// Connects to 127.0.0.1:`port`.
    public static func connect(port: Int) async throws -> OpenRawConnection {
        try await withCheckedThrowingContinuation { continuation in
            onDedicatedThread {
                do {
                    let descriptor = try connectLoopbackSocket(port: port)
                    continuation.resume(returning: OpenRawConnection(descriptor: descriptor))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Sends `text` whole (or as much as the peer takes before it closes).
    public func send(_ text: String) async {
        let descriptor = self.descriptor
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            onDedicatedThread {
                var bytes = Array(text.utf8)[...]
                while !bytes.isEmpty {
                    let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if sent <= 0 { break }
                    bytes = bytes.dropFirst(sent)
                }
                continuation.resume()
            }
        }
    }

    /// What the server sends next (one `recv`), or "" when it sends nothing within `timeout` or closed.
    public func readReply(timeout: Duration) async -> String {
        let descriptor = self.descriptor
        return await withCheckedContinuation { continuation in
            onDedicatedThread {
                var waited = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
                setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &waited, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = recv(descriptor, &buffer, buffer.count, 0)
                continuation.resume(returning: count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : "")
            }
        }
    }

    /// Closes the connection.
    public func close() {
        Glibc.close(self.descriptor)
    }
}
