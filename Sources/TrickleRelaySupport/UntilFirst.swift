/// Runs `operations` concurrently and returns as soon as the first of them returns, cancelling the rest:
/// "wait for a signal, or a timeout, or shutdown", written once.
public func untilFirst(_ operations: (@Sendable () async -> Void)...) async {
    await withTaskGroup(of: Void.self) { group in
        for operation in operations { group.addTask { await operation() } }
        _ = await group.next()
        group.cancelAll()
    }
}
