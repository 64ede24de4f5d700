import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Testing
import TrickleProtocol
import TrickleRelaySupport
import TrickleTestSupport

/// The fault proxy itself: each mode does what the fault suite relies on.
@Suite("FaultProxy modes", .timeLimit(.minutes(1)))
struct FaultProxyTests {
    @Test("pass forwards both ways; delay and throttle can only make a request slower, by at least their amount")
    func passDelayThrottle() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let port = try #require(Int(base.split(separator: ":").last!))
            let proxy = FaultProxy(targetPort: port)
            try await proxy.run { (proxyPort: Int) async throws in
                let through = "http://127.0.0.1:\(proxyPort)"
                let body = String(repeating: "{\"a\":1}\n", count: 12_800)  // 100 KiB
                #expect(try await client.send(.POST, "\(through)/p/0", body: body).status == 200)
                #expect(try await client.send(.GET, "\(through)/p/0").body == body)
                proxy.mode = .delay(.milliseconds(300))
                var started = ContinuousClock.now
                #expect(try await client.send(.GET, "\(through)/p/0").body == body)
                #expect(ContinuousClock.now - started >= .milliseconds(300))
                proxy.mode = .throttle(bytesPerSecond: 100 * 1024)
                started = ContinuousClock.now
                #expect(try await client.send(.GET, "\(through)/p/0").body == body)
                #expect(ContinuousClock.now - started >= .milliseconds(800), "100 KiB at 100 KiB/s")
                #expect(proxy.bytesForwarded > 3 * body.utf8.count)
            }
        }
    }

    @Test("resetAfter cuts a connection once that many bytes went through; down resets new ones at once; pass heals")
    func resetDownAndPass() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let port = try #require(Int(base.split(separator: ":").last!))
            let proxy = FaultProxy(targetPort: port)
            try await proxy.run { (proxyPort: Int) async throws in
                let body = String(repeating: "x", count: 64 * 1024)
                #expect(try await client.send(.POST, "\(base)/r/0", body: body).status == 200)
                let request = "GET /r/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                proxy.mode = .resetAfter(bytes: 4096)
                // The connection is cut past 4 KiB: the peer sees it closed (reset) long before 64 KiB came.
                #expect(try await RawConnection.sendAndWaitForClose(port: proxyPort, bytes: request, timeout: .seconds(10)))
                #expect(proxy.bytesForwarded < 64 * 1024)
                proxy.mode = .down
                #expect(try await RawConnection.sendAndReadReply(port: proxyPort, bytes: request, timeout: .seconds(5)) == "")
                proxy.mode = .pass
                let healed = try await RawConnection.sendAndReadReply(port: proxyPort, bytes: request, timeout: .seconds(10))
                #expect(healed.hasPrefix("HTTP/1.1 200"), "\(healed.prefix(200).debugDescription) accepted \(proxy.connectionsAccepted)")
            }
        }
    }

    @Test("stall holds a request until the mode changes; nothing is lost")
    func stallHolds() async throws {
        try await withTrickleServer { (server, base, client) async throws in
            let port = try #require(Int(base.split(separator: ":").last!))
            let proxy = FaultProxy(targetPort: port)
            try await proxy.run { (proxyPort: Int) async throws in
                #expect(try await client.send(.POST, "\(base)/s/0", body: "{\"a\":1}\n").status == 200)
                proxy.mode = .stall
                let answered = Recorder<String>()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { answered.append(try await client.send(.GET, "http://127.0.0.1:\(proxyPort)/s/0").body) }
                    try await waitUntil("the stalled connection") { proxy.connectionsAccepted >= 1 }
                    try await Task.sleep(for: .milliseconds(300))  // the stall is the fault under test: it must hold
                    #expect(answered.values.isEmpty, "a stalled proxy answered")
                    proxy.mode = .pass
                    try await group.waitForAll()
                }
                #expect(answered.values == ["{\"a\":1}\n"])
            }
        }
    }
}
