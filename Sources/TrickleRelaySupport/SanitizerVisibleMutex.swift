#if TRICKLE_RELAY_TSAN
import Glibc

/// `Synchronization.Mutex`'s API over a `pthread_mutex_t`, for ThreadSanitizer builds only.
///
/// The toolchain's `Synchronization` module is not built with ThreadSanitizer, so TSan never sees `Mutex` lock and
/// unlock and reports every access to the state behind one as a race. Under `TRICKLE_RELAY_TSAN` (set by
/// Package.swift when `TRICKLE_RELAY_TSAN` is in the environment, as `.ci/run` does for its `--sanitize=thread`
/// run) ``RelayMutex`` is this type, whose lock TSan intercepts; other builds use `Mutex` itself.
public final class SanitizerVisibleMutex<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched between `pthread_mutex_lock` and `pthread_mutex_unlock`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: sending Value) {
        self.value = value
        self.mutex = .allocate(capacity: 1)
        pthread_mutex_init(self.mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}

#endif
