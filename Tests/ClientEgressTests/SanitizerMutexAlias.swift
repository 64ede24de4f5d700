#if TRICKLE_RELAY_TSAN
import TrickleRelaySupport

/// ThreadSanitizer builds only: `Mutex` is one TSan can see lock (see `SanitizerVisibleMutex`).
typealias Mutex = SanitizerVisibleMutex
#endif
