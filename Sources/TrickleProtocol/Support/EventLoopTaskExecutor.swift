public import NIOCore

/// Runs tasks that prefer it on one NIO event loop, as the *generic* executor with this task executor set.
///
/// Why not NIO's "event loop as the global executor" alone: NIO runs every job as if isolated to the event
/// loop's serial executor, so each hop back to nonisolated code (after every resumed continuation: each body
/// chunk an HTTP client hands over) is a second enqueue and a second run of the job. A task that prefers this
/// executor runs nonisolated code here without those hops, on the thread its socket is read on.
public final class EventLoopTaskExecutor: TaskExecutor {
    /// The loop the tasks run on.
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
