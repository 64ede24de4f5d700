#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TrickleRelaySupport

/// A loopback port held for a test that starts a server on it later: bound, so no other socket can take it
/// meanwhile (another test's server bound to port 0, an outgoing connection's local port), and not listening, so a
/// connection to it is refused — a server that is down. ``release()`` frees it just before the server binds it.
///
/// (A port picked as unused and freed at once can be taken by the time the server binds it, seconds later: a
/// client then reaches some other test's server and waits there.)
public final class PortReservation: Sendable {
    /// The port.
    public let port: Int
    private let descriptor: RelayMutex<Int32?>

    public init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw PortReservationError(description: "socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard bound == 0, named == 0 else {
            close(descriptor)
            throw PortReservationError(description: "bind/getsockname: errno \(errno)")
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.descriptor = RelayMutex(descriptor)
    }

    /// Frees the port (once; later calls do nothing).
    public func release() {
        if let descriptor = self.descriptor.withLock({ value -> Int32? in defer { value = nil }; return value }) {
            close(descriptor)
        }
    }

    deinit { self.release() }
}

struct PortReservationError: Error, CustomStringConvertible {
    let description: String
}
