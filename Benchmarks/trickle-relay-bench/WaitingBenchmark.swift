import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TrickleProtocol

/// Subscriptions registered before their runners start (the normal order for a gateway): `POST
/// /v1/subscriptions` N times to one `client` daemon for channels of a `serve` that do not exist yet, timing
/// each quarter of the adds, then the CPU the daemon and the server spend while every subscription waits, after
/// `settle` seconds (the wait back-off grows for about two minutes), over `window` seconds.
///
/// `waiting [count] [settle seconds] [window seconds] [serve flags…]`; default 10,000, 150, 60. Flags pass to
/// `serve` (`--no-announce-channels`: the subscriptions then ask on their own back-off, without the feed).
struct WaitingBenchmark {
    static func run(arguments: [String]) async throws {
        let numbers = arguments.compactMap { Int($0) }
        let count = numbers.first ?? 10_000
        let settle = numbers.count > 1 ? numbers[1] : 150
        let window = numbers.count > 2 ? numbers[2] : 60
        let server = try await BenchServer.startOrAttach(arguments: [], serveArguments: arguments.filter { $0.hasPrefix("--") })
        defer { server.stop() }
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("waiting-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let port = 30_000 + Int.random(in: 0..<1_000)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trickle-relay")
        daemon.arguments = [
            "client", "--sink", "null", "--keep-running", "--quiet", "--log-level", "warning", "--listen", "127.0.0.1:\(port)",
            "--wait-for-channel", "86400", "--spool-dir", state,
        ]
        try daemon.run()
        defer {
            // Gone before its state directory is removed (it writes its state as it stops).
            daemon.terminate()
            daemon.waitUntilExit()
        }
        let api = "http://127.0.0.1:\(port)"
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            for _ in 0..<200 {
                if (try? await client.execute(HTTPClientRequest(url: "\(api)/healthz"), timeout: .seconds(1)).status) == .ok { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let tag = UInt32.random(in: 0...UInt32.max)
            var quarters: [Double] = []
            var quarterStart = ContinuousClock.now
            let began = quarterStart
            for index in 0..<count {
                var request = HTTPClientRequest(url: "\(api)/v1/subscriptions")
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: #"{"events_url":"\#(server.url)/waiting-\#(tag)-\#(index)-events","start":0}"#))
                let response = try await client.execute(request, timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 16)
                guard response.status == .created else {
                    print("subscription \(index) refused: HTTP \(response.status.code)")
                    return
                }
                if (index + 1) % max(count / 4, 1) == 0 {
                    quarters.append((ContinuousClock.now - quarterStart).seconds)
                    quarterStart = .now
                }
            }
            let adding = (ContinuousClock.now - began).seconds
            let listing = ContinuousClock.now
            let page = try await client.execute(HTTPClientRequest(url: "\(api)/v1/subscriptions?limit=100"), timeout: .seconds(30))
            let pageBody = String(buffer: try await page.body.collect(upTo: 1 << 24))
            let pageSeconds = (ContinuousClock.now - listing).seconds
            try await Task.sleep(for: .seconds(settle))
            let daemonBefore = BenchServer.cpuTime(pid: daemon.processIdentifier)
            let serverBefore = BenchServer.cpuTime(pid: server.pid)
            try await Task.sleep(for: .seconds(window))
            let daemonCPU = BenchServer.cpuTime(pid: daemon.processIdentifier) - daemonBefore
            let serverCPU = BenchServer.cpuTime(pid: server.pid) - serverBefore
            print(
                String(
                    format:
                        "waiting %d subscriptions: added in %.2f s (quarters %@ s), first page of 100 in %.1f ms (total %@); after %d s, over %d s: daemon %.2f%% of a core, server %.2f%%, daemon RSS %.1f MiB",
                    count, adding, quarters.map { String(format: "%.2f", $0) }.joined(separator: ", "), pageSeconds * 1_000,
                    pageBody.contains(#""total":\#(count)"#) ? "\(count)" : "wrong", settle, window,
                    100 * daemonCPU.seconds / Double(window), 100 * serverCPU.seconds / Double(window),
                    Double(BenchServer.residentBytes(pid: daemon.processIdentifier)) / 1_048_576
                )
            )
        }
    }
}
