import Foundation
import NIOCore
import NIOPosix

/// A trickle server in its own process, for benchmarks that measure the server alone: `trickle-relay serve` from
/// this binary's folder, or any server already running (`URL PID`: another implementation, side by side).
struct BenchServer {
    var url: String
    var pid: Int32
    var process: Process?

    /// `[URL PID]` attaches to a running server; nothing starts `trickle-relay serve` on a free port.
    ///
    /// - Parameter tls: A certificate and key (PEM): the server is started with `--tls-cert`/`--tls-key`.
    static func startOrAttach(
        arguments: [String],
        tls: (certificate: String, key: String)? = nil,
        serveArguments: [String] = [],
        port: Int = 29_000 + Int.random(in: 0..<1_000)
    ) async throws -> BenchServer {
        if arguments.count >= 2, let pid = Int32(arguments[1]) {
            return BenchServer(url: arguments[0], pid: pid, process: nil)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trickle-relay")
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            print("no \(executable.path): build it first (TRICKLE_RELAY_BENCHMARKS=1 swift build -c release --product trickle-relay), or pass URL PID")
            exit(64)
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = ["serve", "--port", "\(port)", "--log-level", "warning"] + (tls.map { ["--tls-cert", $0.certificate, "--tls-key", $0.key] } ?? []) + serveArguments
        try process.run()
        let server = BenchServer(url: "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)", pid: process.processIdentifier, process: process)
        for _ in 0..<100 {
            // Listening is enough (a TLS server's /healthz would need its certificate trusted here).
            if (try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get().close()) != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return server
    }

    func stop() { self.process?.terminate() }

    /// A self-signed certificate for 127.0.0.1 and its key, made by the `openssl` CLI in a temporary folder: the
    /// server's pair and, the certificate being its own issuer, the CA file its clients trust.
    static func makeCertificate() throws -> (certificate: String, key: String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", folder + "/key.pem", "-out",
            folder + "/cert.pem", "-subj", "/CN=bench", "-days", "2", "-addext", "subjectAltName=IP:127.0.0.1",
        ]
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return (folder + "/cert.pem", folder + "/key.pem")
    }

    /// User + system CPU time of `pid` so far (`/proc/<pid>/stat`).
    static func cpuTime(pid: Int32) -> Duration {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return .zero }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: utime and stime are fields 14 and 15 of proc(5), here 12 and 13 (1-based).
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return .zero }
        return .milliseconds((user + system) * 1_000 / sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Open sockets of `pid` (`/proc/<pid>/fd` links to `socket:[…]`).
    static func sockets(pid: Int32) -> Int {
        let folder = "/proc/\(pid)/fd"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        return entries.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: folder + "/" + $0))?.hasPrefix("socket:") == true }.count
    }

    /// Resident memory of `pid` in bytes (`/proc/<pid>/statm`).
    static func residentBytes(pid: Int32) -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * sysconf(Int32(_SC_PAGESIZE))
    }
}
