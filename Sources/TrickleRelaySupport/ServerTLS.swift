public import NIOSSL
import Synchronization

/// A listener's TLS: its certificate chain and key, loaded and checked at start and swapped for new files on
/// reload (SIGHUP) without dropping a connection; connections already open keep the context they started with.
public final class ServerTLS: Sendable {
    /// The certificate chain's file; `nil` for a context handed in whole.
    public let certificatePath: String?
    public let keyPath: String?
    /// When set, clients must present a certificate issued by one of these CAs (mutual TLS).
    public let clientCertificateAuthority: String?
    /// Whether the server offers HTTP/2 (ALPN `h2` before `http/1.1`), as go-livepeer's does.
    public let offersHTTP2: Bool
    private let current: RelayMutex<NIOSSLContext>

    /// Loads `certificatePath` (a PEM chain, leaf first) and `keyPath` (its unencrypted PEM key).
    ///
    /// - Parameter clientCertificateAuthority: PEM CAs whose client certificates are required; `nil` asks for none.
    /// - Throws: ``TLSFiles/Failure`` naming the file and the problem (missing, not PEM, expired, key mismatch).
    /// - Parameter offersHTTP2: Offer HTTP/2 as well (ALPN `h2`, then `http/1.1`).
    public init(certificatePath: String, keyPath: String, clientCertificateAuthority: String? = nil, offersHTTP2: Bool = false) throws(TLSFiles.Failure) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.clientCertificateAuthority = clientCertificateAuthority
        self.offersHTTP2 = offersHTTP2
        self.current = RelayMutex(
            try Self.context(certificatePath: certificatePath, keyPath: keyPath, clientCertificateAuthority: clientCertificateAuthority, offersHTTP2: offersHTTP2)
        )
    }

    /// TLS from a context the caller made (an application embedding the server); ``reload()`` keeps it.
    ///
    /// - Parameter offersHTTP2: Whether the context's ALPN offers `h2` (the server then speaks HTTP/2 when chosen).
    public init(context: NIOSSLContext, offersHTTP2: Bool = false) {
        self.certificatePath = nil
        self.keyPath = nil
        self.clientCertificateAuthority = nil
        self.offersHTTP2 = offersHTTP2
        self.current = RelayMutex(context)
    }

    /// The context new connections use.
    public var context: NIOSSLContext { self.current.withLock { $0 } }

    /// Reads the files again; on success new connections use them, on failure the running pair stays.
    ///
    /// - Throws: ``TLSFiles/Failure`` naming the file and the problem.
    public func reload() throws(TLSFiles.Failure) {
        guard let certificatePath = self.certificatePath, let keyPath = self.keyPath else { return }
        let context = try Self.context(
            certificatePath: certificatePath,
            keyPath: keyPath,
            clientCertificateAuthority: self.clientCertificateAuthority,
            offersHTTP2: self.offersHTTP2
        )
        self.current.withLock { $0 = context }
    }

    private static func context(
        certificatePath: String,
        keyPath: String,
        clientCertificateAuthority: String?,
        offersHTTP2: Bool
    ) throws(TLSFiles.Failure) -> NIOSSLContext {
        let now = Int(WallClock.unixNanoseconds() / 1_000_000_000)
        let identity = try TLSFiles.identity(certificatePath: certificatePath, keyPath: keyPath, now: now)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.chain.map { .certificate($0) },
            privateKey: .privateKey(identity.key)
        )
        // Saying what the server speaks lets an HTTP/2-first client settle at once.
        configuration.applicationProtocols = offersHTTP2 ? ["h2", "http/1.1"] : ["http/1.1"]
        if let clientCertificateAuthority {
            let authorities = try TLSFiles.certificates(path: clientCertificateAuthority, isChain: false, now: now)
            configuration.trustRoots = .certificates(authorities)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSFiles.Failure(code: .keyMismatch, path: keyPath, reason: "cannot be used with \(certificatePath)")
        }
    }
}
