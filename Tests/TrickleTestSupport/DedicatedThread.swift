import Foundation

/// Runs blocking work — a pipe read to its end, a blocking socket — on a thread of its own.
///
/// Never on a Dispatch global queue: on Linux the Swift concurrency pool runs jobs on the same default-QoS root
/// queue, and each worker blocked there holds back every task of the test process until Dispatch adds a thread
/// (about one a second). Measured on this 2-core machine, a 5 ms task loop's longest gap with N global-queue workers
/// blocked for 3 s: N = 2, 0.9 s; 4, 2.9 s; 16, 6.9 s. A child process's stderr read to its end for its whole
/// life is such a worker: with a few children running, unrelated tests timed out waiting for their own tasks.
public func onDedicatedThread(_ body: @escaping @Sendable () -> Void) {
    Thread.detachNewThread(body)
}
