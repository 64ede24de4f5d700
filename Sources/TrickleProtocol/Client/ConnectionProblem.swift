import NIOCore
public import NIOSSL
import TrickleRelaySupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a request never reached its server, in words an operator can act on: a certificate problem names the host,
/// the cause and the fix; the library's own error text stays out of it (it goes to the debug log).
public struct ConnectionProblem: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// The server's certificate is not signed by a trusted authority (a private CA, or self-signed).
        case certificateNotTrusted = "certificate_not_trusted"
        /// The server's certificate is past its end date.
        case certificateExpired = "certificate_expired"
        /// The server's certificate is not valid yet (or this machine's clock is wrong).
        case certificateNotYetValid = "certificate_not_yet_valid"
        /// The server's certificate names other hosts.
        case certificateForAnotherHost = "certificate_for_another_host"
        /// The server asks for a client certificate and none was presented.
        case clientCertificateRequired = "client_certificate_required"
        /// The server refused the client certificate presented.
        case clientCertificateRejected = "client_certificate_rejected"
        /// Any other TLS failure (not an https server, no common protocol version or cipher).
        case tlsHandshakeFailed = "tls_handshake_failed"
        /// Nothing listens there.
        case connectionRefused = "connection_refused"
        /// The connection attempt took longer than its bound.
        case connectTimeout = "connect_timeout"
        /// The server accepted the connection but did not finish the TLS handshake in time.
        case tlsHandshakeTimeout = "tls_handshake_timeout"
        /// Anything else; ``description`` carries the error.
        case other
    }

    public var kind: Kind
    public var description: String

    public init(kind: Kind, description: String) {
        self.kind = kind
        self.description = description
    }

    /// Whether the server's or the client's certificate is the cause (a failure state of its own).
    public var isCertificateProblem: Bool {
        switch self.kind {
        case .certificateNotTrusted, .certificateExpired, .certificateNotYetValid, .certificateForAnotherHost,
            .clientCertificateRequired, .clientCertificateRejected:
            true
        default:
            false
        }
    }

    /// What `error` means for a request to `host:port`, from the error alone.
    ///
    /// A failed certificate verification is reported as "not accepted" with every possible cause; ``diagnose(_:host:port:)``
    /// looks at the certificate to name the one that applies.
    public static func classify(_ error: any Error, host: String, port: Int) -> ConnectionProblem {
        let target = Self.target(host: host, port: port)
        let text = String(describing: error)
        if error is TLSHandshakeTimedOut || text.contains("tlsHandshakeTimeout") {
            return ConnectionProblem(
                kind: .tlsHandshakeTimeout,
                description: "\(target) accepted the connection but did not answer the TLS handshake in time: is it an https server, "
                    + "and is it overloaded?"
            )
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return ConnectionProblem(
                kind: .certificateNotTrusted,
                description: "the TLS certificate of \(target) was not accepted (not trusted, expired, or issued for another host); "
                    + "for a private CA pass --ca-file PEM"
            )
        }
        if text.contains("failedToValidateHostname") || text.contains("serverHostnameImpossibleToMatch") {
            return ConnectionProblem(
                kind: .certificateForAnotherHost,
                description: "the TLS certificate of \(target) is issued for another host: use a URL with a name the certificate carries"
            )
        }
        if text.contains("CERTIFICATE_REQUIRED") {
            return ConnectionProblem(
                kind: .clientCertificateRequired,
                description: "\(target) requires a client certificate: pass --client-cert PEM and --client-key PEM"
            )
        }
        if text.contains("ALERT_BAD_CERTIFICATE") || text.contains("ALERT_UNKNOWN_CA") || text.contains("ALERT_CERTIFICATE_UNKNOWN")
            || text.contains("ALERT_HANDSHAKE_FAILURE")
        {
            return ConnectionProblem(
                kind: .clientCertificateRejected,
                description: "\(target) refused the TLS handshake at the client certificate: it asks for one it trusts; "
                    + "check --client-cert and --client-key"
            )
        }
        if error is NIOSSLError || error is BoringSSLError || text.contains("handshakeFailed") || text.contains("WRONG_VERSION_NUMBER") {
            return ConnectionProblem(
                kind: .tlsHandshakeFailed,
                description: "the TLS handshake with \(target) failed: is it an https server? (details at log level debug)"
            )
        }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED {
            return ConnectionProblem(kind: .connectionRefused, description: "connection refused by \(target): is the server running?")
        }
        if text.contains("connectTimeout") || text.contains("connectTimeout(") {
            return ConnectionProblem(kind: .connectTimeout, description: "connecting to \(target) timed out")
        }
        if text.contains("connectionRefused") || text.contains("Connection refused") {
            return ConnectionProblem(kind: .connectionRefused, description: "connection refused by \(target): is the server running?")
        }
        return ConnectionProblem(kind: .other, description: text)
    }

    /// ``diagnose(_:host:port:)`` for a request to `url`; an error for a URL without an origin is described as it is.
    public static func diagnose(_ error: any Error, url: String) async -> ConnectionProblem {
        guard let origin = HTTPOrigin(url: url) else { return ConnectionProblem(kind: .other, description: String(describing: error)) }
        return await Self.diagnose(error, host: origin.host, port: origin.port)
    }

    /// ``classify(_:host:port:)``, then for a certificate that was not accepted, a look at it (one handshake that
    /// accepts any certificate and sends nothing, at most once a minute per server) to say which cause applies.
    public static func diagnose(_ error: any Error, host: String, port: Int) async -> ConnectionProblem {
        let problem = Self.classify(error, host: host, port: port)
        guard problem.kind == .certificateNotTrusted || problem.kind == .certificateForAnotherHost else { return problem }
        guard let certificate = await TLSPeerProbe.shared.leafCertificate(host: host, port: port) else { return problem }
        return Self.certificateProblem(certificate, host: host, port: port, now: Int(WallClock.unixNanoseconds() / 1_000_000_000))
    }

    /// The cause a rejected server certificate shows: past its dates, issued for other names, or else not trusted.
    public static func certificateProblem(_ certificate: NIOSSLCertificate, host: String, port: Int, now: Int) -> ConnectionProblem {
        let target = Self.target(host: host, port: port)
        let name = TLSFiles.name(of: certificate)
        if Int(certificate.notValidAfter) < now {
            return ConnectionProblem(
                kind: .certificateExpired,
                description: "the TLS certificate of \(target) (\(name)) expired on \(TLSFiles.date(Int(certificate.notValidAfter))): "
                    + "the server must renew it"
            )
        }
        if Int(certificate.notValidBefore) > now {
            return ConnectionProblem(
                kind: .certificateNotYetValid,
                description: "the TLS certificate of \(target) (\(name)) is not valid before \(TLSFiles.date(Int(certificate.notValidBefore))): "
                    + "check this machine's clock"
            )
        }
        let names = Self.names(of: certificate)
        if !names.isEmpty, !names.contains(where: { Self.matches(name: $0, host: host) }) {
            return ConnectionProblem(
                kind: .certificateForAnotherHost,
                description: "the TLS certificate of \(target) is issued for \(names.prefix(5).joined(separator: ", ")), not \(host): "
                    + "use a URL with one of those names"
            )
        }
        return ConnectionProblem(
            kind: .certificateNotTrusted,
            description: "the TLS certificate of \(target) (\(name)) is not signed by a trusted authority (unknown issuer or self-signed): "
                + "pass --ca-file with the CA that issued it"
        )
    }

    static func target(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The DNS names and IP addresses a certificate is issued for (its subject alternative names).
    static func names(of certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            switch name.nameType {
            case .dnsName: String(decoding: name.contents, as: UTF8.self)
            case .ipAddress: Self.address(Array(name.contents))
            default: nil
            }
        }
    }

    /// An IP address from a certificate's four or sixteen bytes (IPv6 without `::` shortening: enough to compare
    /// with how the host was written only for IPv4, which is what certificates for local servers carry).
    static func address(_ bytes: [UInt8]) -> String? {
        switch bytes.count {
        case 4:
            return bytes.map(String.init).joined(separator: ".")
        case 16:
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
        default:
            return nil
        }
    }

    /// A certificate name matches a host: equal ignoring case, or a `*.` wildcard for exactly one leading label.
    static func matches(name: String, host: String) -> Bool {
        let name = name.lowercased()
        let host = host.lowercased()
        if name == host { return true }
        guard name.hasPrefix("*."), let dot = host.firstIndex(of: ".") else { return false }
        return host[dot...] == name.dropFirst()
    }
}
