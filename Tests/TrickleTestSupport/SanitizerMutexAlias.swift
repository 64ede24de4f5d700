#if TRICKLE_RELAY_TSAN
import TrickleProtocol

/// ThreadSanitizer builds only: `Mutex` is one TSan can see lock (see `SanitizerVisibleMutex`).
typealias Mutex = SanitizerVisibleMutex
#endif
