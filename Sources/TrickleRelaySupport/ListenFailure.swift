#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Why a listener could not open its port, in words: the system's reason ("Address already in use") instead of
/// the socket layer's text (`bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)`).
public struct ListenFailure: Error, Sendable, CustomStringConvertible {
    /// The address asked for, `host:port`.
    public var address: String
    /// What went wrong.
    public var reason: String
    /// What the operator can do about it (a sentence, or empty).
    public var advice: String

    public init(host: String, port: Int, error: any Error, advice: String = "") {
        self.address = ListenAddress(host: host, port: port).description
        self.reason = Self.reason(error)
        self.advice = advice
    }

    public var description: String {
        "cannot listen on \(self.address): \(self.reason)" + (self.advice.isEmpty ? "" : "; \(self.advice)")
    }

    /// The system's words for a socket error; other errors as they describe themselves.
    public static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? SocketAddressError, case .unknown(let host, let port) = error {
            return "\(host) does not resolve to an address to listen on (port \(port))"
        }
        return "\(error)"
    }
}
