public import Synchronization

/// The mutex every module uses: `Synchronization.Mutex`, except in ThreadSanitizer builds (`TRICKLE_RELAY_TSAN`),
/// where it is ``SanitizerVisibleMutex``, a lock TSan can see (see there). One alias for the whole package: a
/// module-level `Mutex` alias in each module would shadow `Synchronization.Mutex` only there.
#if TRICKLE_RELAY_TSAN
public typealias RelayMutex<Value> = SanitizerVisibleMutex<Value>
#else
public typealias RelayMutex<Value> = Mutex<Value>
#endif
