public import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Certificates and private keys read from PEM files and checked when they are named, so a bad file is an error
/// naming it and the problem (exit 64 at start) rather than a handshake that fails later in library words.
public enum TLSFiles {
    /// The largest PEM file read: the system's whole CA bundle is about 220 KB.
    public static let maximumBytes = 1 << 20

    /// Why a PEM file was refused.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: Sendable, Equatable {
            /// Missing, not permitted, a directory.
            case unreadable
            /// Larger than ``TLSFiles/maximumBytes``.
            case tooLarge
            /// Holds no PEM certificate (or no PEM private key) that parses.
            case notPEM
            /// Every certificate in it is past its end date, or the leaf of a certificate chain is.
            case expired
            /// The leaf of a certificate chain is not valid yet.
            case notYetValid
            /// The private key does not belong to the certificate.
            case keyMismatch
        }

        public var code: Code
        public var path: String
        public var reason: String

        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// The certificates in a PEM file (a CA bundle, or a chain whose first certificate is the leaf).
    ///
    /// - Parameters:
    ///   - path: The file.
    ///   - isChain: `true` for a certificate chain: its leaf must be valid now. `false` for a CA bundle: at least
    ///     one certificate must be.
    ///   - now: Seconds since the epoch (tests pass their own).
    public static func certificates(path: String, isChain: Bool, now: Int) throws(Failure) -> [NIOSSLCertificate] {
        let bytes = try Self.read(path: path)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            certificates = []
        }
        guard let leaf = certificates.first else {
            throw Failure(code: .notPEM, path: path, reason: "holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)")
        }
        if isChain {
            if Int(leaf.notValidAfter) < now {
                throw Failure(code: .expired, path: path, reason: "the certificate \(Self.name(of: leaf)) expired on \(Self.date(Int(leaf.notValidAfter)))")
            }
            if Int(leaf.notValidBefore) > now {
                throw Failure(code: .notYetValid, path: path, reason: "the certificate \(Self.name(of: leaf)) is not valid before \(Self.date(Int(leaf.notValidBefore)))")
            }
        } else if certificates.allSatisfy({ Int($0.notValidAfter) < now }) {
            throw Failure(
                code: .expired,
                path: path,
                reason: "every certificate in it has expired (\(Self.name(of: leaf)) on \(Self.date(Int(leaf.notValidAfter))))"
            )
        }
        return certificates
    }

    /// The private key in a PEM file (unencrypted: the relay asks for no passphrase).
    public static func privateKey(path: String) throws(Failure) -> NIOSSLPrivateKey {
        let bytes = try Self.read(path: path)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw Failure(code: .notPEM, path: path, reason: "holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY----- or an RSA/EC key)")
        }
    }

    /// A certificate chain and its private key, checked to belong together.
    public static func identity(
        certificatePath: String,
        keyPath: String,
        now: Int
    ) throws(Failure) -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) {
        let chain = try Self.certificates(path: certificatePath, isChain: true, now: now)
        let key = try Self.privateKey(path: keyPath)
        // BoringSSL checks the key against the leaf when a context takes both.
        do {
            _ = try NIOSSLContext(
                configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            )
        } catch {
            throw Failure(code: .keyMismatch, path: keyPath, reason: "is not the private key of the certificate in \(certificatePath)")
        }
        return (chain, key)
    }

    /// A certificate's name for a message: its common name, else its first DNS name, else its serial number.
    public static func name(of certificate: NIOSSLCertificate) -> String {
        // NIOSSL keeps `commonName()` internal; its description carries it (`<NIOSSLCertificate;…;common_name=X;…>`).
        let description = certificate.description
        for field in description.split(separator: ";") where field.hasPrefix("common_name=") {
            let commonName = field.dropFirst("common_name=".count).prefix { $0 != ">" }
            if !commonName.isEmpty { return "'\(commonName)'" }
        }
        for name in certificate._subjectAlternativeNames() where name.nameType == .dnsName {
            return "'\(String(decoding: name.contents, as: UTF8.self))'"
        }
        return "with serial " + certificate.serialNumber.map { String($0, radix: 16) }.joined()
    }

    /// `2026-12-06 14:02 UTC`.
    public static func date(_ seconds: Int) -> String {
        var value = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&value, &parts) != nil else { return "\(seconds)" }
        func two(_ number: Int32) -> String { number < 10 ? "0\(number)" : "\(number)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)) UTC"
    }

    private static func read(path: String) throws(Failure) -> [UInt8] {
        do {
            return try BoundedFile.read(path: path, maximumBytes: Self.maximumBytes)
        } catch {
            switch error.code {
            case .unreadable: throw Failure(code: .unreadable, path: path, reason: error.reason + "; check the path and its permissions")
            case .tooLarge: throw Failure(code: .tooLarge, path: path, reason: "is larger than \(Self.maximumBytes) bytes")
            }
        }
    }
}
