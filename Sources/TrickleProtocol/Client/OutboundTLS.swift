public import NIOSSL
public import TrickleRelaySupport

/// The trust and identity of every outbound HTTPS connection a process makes (publisher, subscriber, metrics
/// reporter, OTLP logs): which certificate authorities it trusts and which client certificate it presents.
///
/// The default is the system's trust store and no client certificate.
public struct OutboundTLS: Sendable, Equatable {
    /// PEM certificate authorities to trust, in addition to the system's (`--ca-file`).
    public var caFile: String?
    /// Trust only ``caFile``, not the system's store (`--ca-only`).
    public var caOnly: Bool
    /// A PEM client certificate (chain) for mutual TLS (`--client-cert`).
    public var clientCertificateFile: String?
    /// Its unencrypted PEM private key (`--client-key`).
    public var clientKeyFile: String?

    public init(caFile: String? = nil, caOnly: Bool = false, clientCertificateFile: String? = nil, clientKeyFile: String? = nil) {
        self.caFile = caFile
        self.caOnly = caOnly
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
    }

    /// Nothing configured: the system's trust store, no client certificate.
    public var isSystemDefault: Bool { self == OutboundTLS() }

    /// Why the settings cannot be used.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: Sendable, Equatable {
            /// The flags do not go together (`--ca-only` without `--ca-file`, a certificate without its key).
            case incomplete
            /// A named file was refused; ``file`` says why.
            case file(TLSFiles.Failure.Code)
        }

        public var code: Code
        public var description: String
    }

    /// The TLS configuration these settings describe, every named file read and checked now.
    ///
    /// - Parameter now: Unix seconds to check validity dates against (tests pass their own); default the clock's.
    /// - Throws: ``Failure`` naming the flag, the file and the problem.
    public func configuration(now: Int? = nil) throws(Failure) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if self.caOnly, self.caFile == nil {
            throw Failure(code: .incomplete, description: "--ca-only needs --ca-file: name the certificate authorities to trust")
        }
        if let caFile = self.caFile {
            let certificates = try Self.checked("--ca-file") { () throws(TLSFiles.Failure) in
                try TLSFiles.certificates(path: caFile, isChain: false, now: now ?? Self.now)
            }
            if self.caOnly {
                configuration.trustRoots = .certificates(certificates)
            } else {
                configuration.trustRoots = .default
                configuration.additionalTrustRoots = [.certificates(certificates)]
            }
        }
        switch (self.clientCertificateFile, self.clientKeyFile) {
        case (nil, nil):
            break
        case (.some, nil):
            throw Failure(code: .incomplete, description: "--client-cert needs --client-key: name the certificate's private key")
        case (nil, .some):
            throw Failure(code: .incomplete, description: "--client-key needs --client-cert: name the certificate the key belongs to")
        case (.some(let certificateFile), .some(let keyFile)):
            let identity = try Self.checked("--client-cert/--client-key") { () throws(TLSFiles.Failure) in
                try TLSFiles.identity(certificatePath: certificateFile, keyPath: keyFile, now: now ?? Self.now)
            }
            configuration.certificateChain = identity.chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(identity.key)
        }
        return configuration
    }

    private static var now: Int { Int(WallClock.unixNanoseconds() / 1_000_000_000) }

    private static func checked<T>(_ flag: String, _ body: () throws(TLSFiles.Failure) -> T) throws(Failure) -> T {
        do {
            return try body()
        } catch {
            throw Failure(code: .file(error.code), description: "\(flag) \(error.description)")
        }
    }
}
