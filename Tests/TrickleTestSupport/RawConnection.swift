import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A raw loopback TCP connection, for what an HTTP client will not do (half a request, then silence or a hang-up).
/// The blocking socket calls run on a Dispatch thread, never on the concurrency pool.
public enum RawConnection {
    /// Connects to 127.0.0.1:`port`, sends `bytes`, and waits until the server closes the connection or
    /// `timeout` passes. Returns whether the server closed it.
    public static func sendAndWaitForClose(port: Int, bytes: String, timeout: Duration) async throws -> Bool {
        try await self.withConnection(port: port, sending: bytes) { descriptor in
            var waited = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &waited, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count == 0 { return true }  // orderly close by the server
                // A timeout (EAGAIN) means the server kept the connection open; a reset means it closed it.
                if count < 0 { return errno == ECONNRESET }
            }
        }
    }

    /// Connects to 127.0.0.1:`port`, sends `bytes`, and returns what the server sends first (one `recv`), or ""
    /// when it sends nothing within `timeout`.
    public static func sendAndReadReply(port: Int, bytes: String, timeout: Duration) async throws -> String {
        try await self.withConnection(port: port, sending: bytes) { descriptor in
            var waited = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &waited, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(descriptor, &buffer, buffer.count, 0)
            return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
        }
    }

    /// Connects to 127.0.0.1:`port`, sends `bytes`, and closes the connection at once (a client that vanishes
    /// part-way through a request).
    public static func sendAndClose(port: Int, bytes: String) async throws {
        try await self.withConnection(port: port, sending: bytes) { _ in }
    }

    private static func withConnection<T: Sendable>(
        port: Int,
        sending bytes: String,
        _ body: @escaping @Sendable (Int32) -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            onDedicatedThread {
                let descriptor: Int32
                do {
                    descriptor = try connectLoopbackSocket(port: port)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                defer { close(descriptor) }
                if !bytes.isEmpty { _ = bytes.withCString { send(descriptor, $0, strlen($0), 0) } }
                continuation.resume(returning: body(descriptor))
            }
        }
    }
}

/// A blocking TCP connect to 127.0.0.1:`port` (call it on a dedicated thread); the caller closes the descriptor.
func connectLoopbackSocket(port: Int) throws -> Int32 {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(descriptor)
        throw POSIXError(.ECONNREFUSED)
    }
    return descriptor
}
