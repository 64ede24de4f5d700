#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
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

    /// Writes the system's roots followed by `caFile`'s certificates to a private file (mode 0600) in `directory`
    /// and returns its path; with no system bundle found, the file holds `caFile`'s alone.
    ///
    /// The file is named after its owner and its contents (`trickle-relay-trust-UID-HASH.pem`), so every start
    /// with the same roots and CA file uses the same one: the exporter reads it for as long as the process runs,
    /// so it cannot be removed, and a process restarted over and over (or killed) leaves one file per trust
    /// configuration, not one per start. An existing file is used only when it is a regular file of this user's
    /// with exactly these bytes; otherwise a new one is written beside it and renamed over the name (a symbolic
    /// link planted there is replaced, never followed), or kept under its own name when the rename is refused.
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
        let name = "\(directory)/trickle-relay-trust-\(getuid())-\(String(FNV1a.hash(bytes), radix: 16)).pem"
        if Self.holdsExactly(bytes, path: name) { return name }
        var template = Array("\(directory)/trickle-relay-trust-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw Failure(description: "cannot create a trust bundle in \(directory): errno \(errno)") }
        let written = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            defer { close(descriptor) }
            var offset = 0
            while offset < bytes.count {
                let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    let code = errno
                    unlink(written)
                    throw Failure(description: "cannot write a trust bundle in \(directory): errno \(code)")
                }
                offset += count
            }
        }
        // Another user's file under the name (a sticky /tmp refuses the rename): this start keeps its own file.
        return rename(written, name) == 0 ? name : written
    }

    /// Whether `path` is a regular file (not a link) of this user's, mode 0600, holding exactly `bytes`.
    private static func holdsExactly(_ bytes: [UInt8], path: String) -> Bool {
        // FileManager's attributes are the path's own (a link is not followed).
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            attributes[.type] as? FileAttributeType == .typeRegular,
            Self.integer(attributes[.ownerAccountID]) == Int(getuid()),
            Self.integer(attributes[.posixPermissions]) == 0o600,
            Self.integer(attributes[.size]) == bytes.count
        else { return false }
        return (try? BoundedFile.read(path: path, maximumBytes: bytes.count)) == bytes
    }

    /// An attribute's number (a `UInt`, or an `NSNumber` when Foundation is in the process too).
    private static func integer(_ value: Any?) -> Int? {
        (value as? UInt).flatMap { Int(exactly: $0) } ?? (value as? Int)
    }

    /// `$TMPDIR`, or `/tmp`.
    public static var temporaryDirectory: String {
        guard let value = getenv("TMPDIR"), value.pointee != 0 else { return "/tmp" }
        return String(cString: value)
    }
}
