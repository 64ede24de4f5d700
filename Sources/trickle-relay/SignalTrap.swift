import ServiceLifecycle
import UnixSignals

/// Calls `action` each time the process receives `signal`, until graceful shutdown: the executable's own signal
/// handling (SIGHUP reload) as a service of its one group; the libraries install no signal handlers.
struct SignalTrap: Service, CustomStringConvertible {
    let signal: UnixSignal
    let description: String
    let action: @Sendable () -> Void

    init(_ signal: UnixSignal, name: String, action: @escaping @Sendable () -> Void) {
        self.signal = signal
        self.description = name
        self.action = action
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: self.signal)
        await cancelWhenGracefulShutdown {
            for await _ in signals { self.action() }
        }
    }
}
