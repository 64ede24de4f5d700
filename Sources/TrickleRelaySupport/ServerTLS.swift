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
    private let current: Mutex<NIOSSLContext>

    /// Loads `certificatePath` (a PEM chain, leaf first) and `keyPath` (its unencrypted PEM key).
    ///
    /// - Parameter clientCertificateAuthority: PEM CAs whose client certificates are required; `nil` asks for none.
    /// - Throws: ``TLSFiles/Failure`` naming the file and the problem (missing, not PEM, expired, key mismatch).
    public init(certificatePath: String, keyPath: String, clientCertificateAuthority: String? = nil) throws(TLSFiles.Failure) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.clientCertificateAuthority = clientCertificateAuthority
        self.current = Mutex(
            try Self.context(certificatePath: certificatePath, keyPath: keyPath, clientCertificateAuthority: clientCertificateAuthority)
        )
    }

    /// TLS from a context the caller made (an application embedding the server); ``reload()`` keeps it.
    public init(context: NIOSSLContext) {
        self.certificatePath = nil
        self.keyPath = nil
        self.clientCertificateAuthority = nil
        self.current = Mutex(context)
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
            clientCertificateAuthority: self.clientCertificateAuthority
        )
        self.current.withLock { $0 = context }
    }

    private static func context(
        certificatePath: String,
        keyPath: String,
        clientCertificateAuthority: String?
    ) throws(TLSFiles.Failure) -> NIOSSLContext {
        let now = Int(WallClock.unixNanoseconds() / 1_000_000_000)
        let identity = try TLSFiles.identity(certificatePath: certificatePath, keyPath: keyPath, now: now)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.chain.map { .certificate($0) },
            privateKey: .privateKey(identity.key)
        )
        // The embedded server speaks HTTP/1.1 only; saying so lets an HTTP/2-first client settle at once.
        configuration.applicationProtocols = ["http/1.1"]
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
