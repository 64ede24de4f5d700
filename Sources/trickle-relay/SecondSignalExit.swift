import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The escape hatch every long-running Unix tool has: the first SIGTERM or SIGINT asks for a graceful stop (the
/// command's `ServiceGroup` flushes, closes and prints its summary, within its documented bounds); a second one
/// ends the process at once with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT), saying so (when
/// standard error takes the line at once: a stopped reader of it never holds the exit).
///
/// Installed once by `main` beside the service group's own handling: dispatch delivers each signal to every
/// source watching it, so this only counts.
enum SecondSignalExit {
    /// The sources, kept for the life of the process.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func install() {
        let queue = DispatchQueue(label: "trickle-relay.second-signal")
        let received = UnsafeMutablePointer<Int>.allocate(capacity: 1)  // touched on `queue` only
        received.initialize(to: 0)
        for signalNumber in [SIGTERM, SIGINT] {
            // Without SIG_IGN the default action (terminate) would win over the dispatch source.
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                received.pointee += Int(source.data)
                guard received.pointee >= 2 else { return }
                let name = signalNumber == SIGTERM ? "SIGTERM" : "SIGINT"
                let message = "trickle-relay: second stop signal (\(name)): exiting now, without waiting for the graceful stop\n"
                // Said only if standard error takes it now: a reader that stopped must not hold the way out.
                var output = pollfd(fd: 2, events: Int16(POLLOUT), revents: 0)
                if poll(&output, 1, 100) == 1, output.revents & Int16(POLLOUT) != 0 {
                    _ = message.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
                }
                _exit(128 + signalNumber)
            }
            source.resume()
            sources.append(source)
        }
    }
}
