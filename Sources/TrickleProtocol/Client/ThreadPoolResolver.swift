#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import Synchronization
import TrickleRelaySupport

/// Resolves a host name for one connection with `getaddrinfo` on threads of the relay's own (``pool``).
///
/// NIO's default resolver runs `getaddrinfo` on a Dispatch queue, and on Linux a Dispatch worker blocked there (a
/// DNS server that stops answering) holds back every Swift task of the process until Dispatch adds a thread, about
/// once a second (docs/architecture.md, "Blocking work"). Here a lookup that hangs holds one of two threads that
/// do nothing else; the connection's connect timeout still ends the attempt.
///
/// One lookup (any address family) answers both of the happy-eyeballs queries: AAAA first, then A.
final class ThreadPoolResolver: Resolver, Sendable {
    /// The lookups' threads, for the whole process.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    private let v6: EventLoopPromise<[SocketAddress]>
    private let v4: EventLoopPromise<[SocketAddress]>
    private let completed = Atomic(false)

    init(loop: any EventLoop) {
        self.v6 = loop.makePromise()
        self.v4 = loop.makePromise()
    }

    func initiateAAAAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
        Self.pool.submit { state in
            guard state == .active else {
                self.complete(.failure(CancellationError()))
                return
            }
            self.complete(Result { try Self.lookup(host: host, port: port) })
        }
        return self.v6.futureResult
    }

    func initiateAQuery(host: String, port: Int) -> EventLoopFuture<[SocketAddress]> {
        self.v4.futureResult
    }

    func cancelQueries() {
        self.complete(.failure(CancellationError()))
    }

    /// Completes both queries once (a lookup that ends after a cancel is dropped).
    private func complete(_ result: Result<(v6: [SocketAddress], v4: [SocketAddress]), any Error>) {
        guard self.completed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        switch result {
        case .success(let addresses):
            self.v6.succeed(addresses.v6)
            self.v4.succeed(addresses.v4)
        case .failure(let error):
            self.v6.fail(error)
            self.v4.fail(error)
        }
    }

    /// `getaddrinfo` for a TCP connection to `host:port`, split by address family. Blocking.
    static func lookup(host: String, port: Int) throws -> (v6: [SocketAddress], v4: [SocketAddress]) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw HostNotResolved(host: host, reason: status == 0 ? "no address" : String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(first) }
        var v6: [SocketAddress] = []
        var v4: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            if let address = info.pointee.ai_addr {
                switch info.pointee.ai_family {
                case AF_INET6:
                    v6.append(address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                case AF_INET:
                    v4.append(address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                default:
                    break
                }
            }
            entry = info.pointee.ai_next
        }
        return (v6, v4)
    }
}

/// A host name `getaddrinfo` could not turn into an address.
struct HostNotResolved: Error, CustomStringConvertible {
    var host: String
    var reason: String
    var description: String { "cannot resolve \(self.host): \(self.reason)" }
}
