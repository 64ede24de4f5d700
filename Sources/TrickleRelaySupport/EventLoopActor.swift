public import NIOCore

/// An actor whose serial executor is one NIO event loop: code isolated to it runs on that loop's thread.
///
/// A followed channel's task runs isolated to the actor of the loop its socket is read on, and the functions on
/// its path (reading a reply, framing, dispatch, the sink's export) are `nonisolated(nonsending)`: they run
/// where their caller runs. So a resumed body chunk costs one enqueue on the loop and no executor switch after it.
///
/// Why not a task executor preference (`withTaskExecutorPreference`): with one, every call into nonisolated
/// async code looks the preference up under the task's status-record lock — at a thousand channels that lookup
/// was a tenth of the daemon's CPU. Why not NIO's "event loop as the global executor" alone: NIO runs every
/// job as if isolated to the loop's serial executor, so each hop back to nonisolated code is a second enqueue.
public actor EventLoopActor {
    /// The loop the actor runs on.
    public nonisolated let eventLoop: any EventLoop
    private nonisolated let executor: any SerialExecutor

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.executor = eventLoop.executor  // once: a loop without its own executor gets a new wrapper per call
    }

    public nonisolated var unownedExecutor: UnownedSerialExecutor { self.executor.asUnownedSerialExecutor() }

    /// Runs `body` isolated to this actor, on its loop.
    public func run<Result: Sendable>(_ body: nonisolated(nonsending) @Sendable () async throws -> Result) async rethrows -> Result {
        try await body()
    }
}
