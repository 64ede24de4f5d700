#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One PEM file with the system's trusted roots and a CA file added to them: for a TLS client (swift-otel's
/// exporter) that takes a single trust file and would otherwise trust *only* that file, where `--ca-file` means
/// "these roots as well".
public enum TrustBundle {
    /// Where Linux distributions keep their bundle of trusted roots (the first that exists is used).
    public static let systemBundlePaths = [
        "/etc/ssl/certs/ca-certificates.crt",  // Debian, Ubuntu, Arch, Alpine
        "/etc/pki/tls/certs/ca-bundle.crt",  // Fedora, RHEL
        "/etc/ssl/ca-bundle.pem",  // openSUSE
        "/etc/pki/tls/cacert.pem",  // OpenELEC
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  // CentOS, RHEL 7
        "/etc/ssl/cert.pem",  // Alpine, others
    ]

    /// A problem writing the bundle.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Writes the system's roots followed by `caFile`'s certificates to a new private file (mode 0600) in
    /// `directory` and returns its path; with no system bundle found, the file holds `caFile`'s alone.
    ///
    /// Both inputs are read bounded (8 MiB for the system bundle, 1 MiB for `caFile`).
    public static func combining(caFile: String, directory: String = Self.temporaryDirectory) throws(Failure) -> String {
        var bytes: [UInt8] = []
        for path in Self.systemBundlePaths {
            if let system = try? BoundedFile.read(path: path, maximumBytes: 8 * 1024 * 1024) {
                bytes = system
                break
            }
        }
        if let last = bytes.last, last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        do {
            bytes += try BoundedFile.read(path: caFile, maximumBytes: 1024 * 1024)
        } catch {
            throw Failure(description: "\(error)")
        }
        var template = Array("\(directory)/trickle-relay-trust-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw Failure(description: "cannot create a trust bundle in \(directory): errno \(errno)") }
        defer { close(descriptor) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw Failure(description: "cannot write a trust bundle in \(directory): errno \(errno)") }
            written += count
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `$TMPDIR`, or `/tmp`.
    public static var temporaryDirectory: String {
        guard let value = getenv("TMPDIR"), value.pointee != 0 else { return "/tmp" }
        return String(cString: value)
    }
}
