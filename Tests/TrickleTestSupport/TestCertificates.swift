import Foundation
public import NIOSSL

/// Certificates made for the tests by the `openssl` CLI: a throwaway CA, server certificates for 127.0.0.1 and
/// localhost (valid, expired, issued for another host, self-signed), a client certificate, and a second CA that
/// trusts none of them. Made once per test process in a temporary folder.
public struct TestCertificates: Sendable {
    /// A certificate and its key, as PEM files.
    public struct Pair: Sendable {
        public let certificate: String
        public let key: String

        /// A server TLS configuration presenting this pair (ALPN `http/1.1`); built from the files directly, so
        /// an expired certificate is presented as it is.
        public func serverConfiguration() throws -> TLSConfiguration {
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(self.certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: self.key, format: .pem))
            )
            tls.applicationProtocols = ["http/1.1"]
            return tls
        }
    }

    public let folder: String
    /// The test CA (PEM), to pass as `--ca-file`.
    public let ca: String
    /// Valid now, for IP 127.0.0.1 and DNS localhost, issued by ``ca``.
    public let server: Pair
    /// Issued by ``ca`` for 127.0.0.1, valid only on 2020-01-01.
    public let expiredServer: Pair
    /// Issued by ``ca``, valid now, for `other.example` only.
    public let otherHostServer: Pair
    /// Valid now for 127.0.0.1, signed by itself.
    public let selfSignedServer: Pair
    /// A client certificate issued by ``ca``.
    public let client: Pair
    /// A CA that issued nothing here.
    public let unrelatedCA: String

    /// The certificates, made on first use (once per process; callers wait without blocking a thread).
    public static func shared() async throws -> TestCertificates {
        try await Maker.shared.certificates()
    }

    /// Makes the certificates once. Waiting on `openssl` must not block the cooperative pool (a test holding a
    /// thread in a blocking wait, and another waiting for it, starve the pool on two cores).
    private actor Maker {
        static let shared = Maker()
        private var making: Task<TestCertificates, any Error>?

        func certificates() async throws -> TestCertificates {
            if let making { return try await making.value }
            let task = Task { try await TestCertificates.make() }
            self.making = task
            return try await task.value
        }
    }

    private init(
        folder: String, ca: String, server: Pair, expiredServer: Pair, otherHostServer: Pair, selfSignedServer: Pair, client: Pair,
        unrelatedCA: String
    ) {
        self.folder = folder
        self.ca = ca
        self.server = server
        self.expiredServer = expiredServer
        self.otherHostServer = otherHostServer
        self.selfSignedServer = selfSignedServer
        self.client = client
        self.unrelatedCA = unrelatedCA
    }

    private static func make() async throws -> TestCertificates {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("trickle-relay-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        func path(_ name: String) -> String { folder + "/" + name }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try await Self.openssl(["req", "-x509"] + key + [
            "-keyout", path("ca.key"), "-out", path("ca.pem"), "-subj", "/CN=TrickleRelay Test CA", "-days", "3",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ], in: folder)
        try await Self.openssl(["req", "-x509"] + key + [
            "-keyout", path("unrelated-ca.key"), "-out", path("unrelated-ca.pem"), "-subj", "/CN=Unrelated CA", "-days", "3",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ], in: folder)
        try """
            [ca]
            default_ca = test
            [test]
            dir = .
            database = index.txt
            new_certs_dir = .
            serial = serial
            default_md = sha256
            policy = any
            copy_extensions = copy
            unique_subject = no
            [any]
            commonName = supplied
            """.write(toFile: path("ca.cnf"), atomically: true, encoding: .utf8)
        try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: path("serial"), atomically: true, encoding: .utf8)
        func issue(_ name: String, commonName: String, names: String, dates: [String]) async throws -> Pair {
            try await Self.openssl(["req"] + key + [
                "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(commonName)",
                "-addext", "subjectAltName=\(names)",
            ], in: folder)
            try await Self.openssl([
                "ca", "-batch", "-config", path("ca.cnf"), "-cert", path("ca.pem"), "-keyfile", path("ca.key"),
                "-in", path("\(name).csr"), "-out", path("\(name).pem"), "-notext",
            ] + dates, in: folder)
            return Pair(certificate: path("\(name).pem"), key: path("\(name).key"))
        }
        let server = try await issue("server", commonName: "localhost", names: "IP:127.0.0.1,DNS:localhost", dates: ["-days", "3"])
        let expiredServer = try await issue(
            "expired",
            commonName: "localhost",
            names: "IP:127.0.0.1,DNS:localhost",
            dates: ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"]
        )
        let otherHostServer = try await issue("other-host", commonName: "other.example", names: "DNS:other.example", dates: ["-days", "3"])
        let client = try await issue("client", commonName: "trickle-relay test client", names: "DNS:client.test", dates: ["-days", "3"])
        try await Self.openssl(["req", "-x509"] + key + [
            "-keyout", path("self-signed.key"), "-out", path("self-signed.pem"), "-subj", "/CN=self-signed", "-days", "3",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ], in: folder)
        return TestCertificates(
            folder: folder,
            ca: path("ca.pem"),
            server: server,
            expiredServer: expiredServer,
            otherHostServer: otherHostServer,
            selfSignedServer: Pair(certificate: path("self-signed.pem"), key: path("self-signed.key")),
            client: client,
            unrelatedCA: path("unrelated-ca.pem")
        )
    }

    /// Runs `openssl` and waits for it without blocking a thread. Its stderr goes to a file, not a pipe: a pipe's
    /// write end inherited by a process another test starts at the same moment would hold its end-of-file back.
    private static func openssl(_ arguments: [String], in folder: String) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let log = folder + "/openssl-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? errors.close() }
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        guard status == 0 else {
            let message = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestCertificatesError(description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(message)")
        }
    }
}

struct TestCertificatesError: Error, CustomStringConvertible {
    let description: String
}
