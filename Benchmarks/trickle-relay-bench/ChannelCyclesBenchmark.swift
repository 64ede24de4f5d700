import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TrickleProtocol
import TrickleRelaySupport

/// The server's memory across channel lifecycles: `cycles` times create / POST 20 × 4 MiB / DELETE on one
/// channel name after another, RSS after each cycle and once the deleted-channel grace period (10 s) is over.
///
/// `cycles [count] [url pid]`.
enum ChannelCyclesBenchmark {
    static func run(arguments: [String]) async throws {
        let cycles = arguments.first.flatMap(Int.init) ?? 10
        let server = try await BenchServer.startOrAttach(arguments: Array(arguments.dropFirst()))
        defer { server.stop() }
        let segment = ByteBuffer(repeating: UInt8(ascii: "x"), count: 4 * 1024 * 1024)
        func rss() -> String { String(format: "%.0f MB", Double(BenchServer.residentBytes(pid: server.pid)) / 1e6) }
        print("cycles: server RSS at start \(rss())")
        try await HTTPClient.withHTTPClient(configuration: TrickleHTTPClient.configuration()) { client in
            for cycle in 1...cycles {
                let channel = "\(server.url)/cycle-\(cycle)"
                var create = HTTPClientRequest(url: channel)
                create.method = .POST
                _ = try await client.execute(create, timeout: .seconds(10)).body.collect(upTo: 1024)
                for seq in 0..<20 {
                    var post = HTTPClientRequest(url: "\(channel)/\(seq)")
                    post.method = .POST
                    post.body = .bytes(segment)
                    _ = try await client.execute(post, timeout: .seconds(30)).body.collect(upTo: 1024)
                }
                var delete = HTTPClientRequest(url: channel)
                delete.method = .DELETE
                _ = try await client.execute(delete, timeout: .seconds(10)).body.collect(upTo: 1024)
                print("cycles: after cycle \(cycle): server RSS \(rss())")
            }
        }
        for wait in [5, 10, 15] {
            try await Task.sleep(for: .seconds(5))
            print("cycles: \(wait) s after the last DELETE: server RSS \(rss())")
        }
    }
}
