import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whether librdkafka can be loaded (without linking it: the tests that need it check first).
public let kafkaLibraryInstalled: Bool = {
    guard let handle = dlopen("librdkafka.so.1", RTLD_NOW | RTLD_LOCAL) else { return false }
    dlclose(handle)
    return true
}()

/// Whether the Kafka tests run: librdkafka and kcat are installed — or `TRICKLE_RELAY_REQUIRE_KAFKA=1` (set by
/// `.ci/run`, which installs both), so that in CI a missing library fails the run instead of skipping the tests.
///
/// Never under ThreadSanitizer: librdkafka starts its threads with C11 `thrd_create`, which TSan does not
/// intercept, and the TSan runtime crashes in the first allocation on such a thread.
#if TRICKLE_RELAY_TSAN
public let kafkaTestsEnabled = false
#else
public let kafkaTestsEnabled = (kafkaLibraryInstalled && FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat"))
    || ProcessInfo.processInfo.environment["TRICKLE_RELAY_REQUIRE_KAFKA"] == "1"
#endif

/// Reads a whole topic with kcat (an independent consumer, librdkafka's own tool): `(key, value)` per message.
public func readTopic(_ topic: String, bootstrap: String, expecting count: Int) async throws -> [(key: String, value: String)] {
    var messages: [(String, String)] = []
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/kcat")
        process.arguments = ["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = await withCheckedContinuation { continuation in
            onDedicatedThread { continuation.resume(returning: output.fileHandleForReading.readDataToEndOfFile()) }
        }
        process.waitUntilExit()
        messages = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let tab = line.firstIndex(of: "\t") else { return nil }
            return (String(line[..<tab]), String(line[line.index(after: tab)...]))
        }
        if messages.count >= count { break }
        try await Task.sleep(for: .milliseconds(200))
    }
    return messages
}

