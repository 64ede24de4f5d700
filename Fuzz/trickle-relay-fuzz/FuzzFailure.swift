import Glibc

/// A broken invariant: what broke goes to standard error, then a trap, so libFuzzer saves the input as a crash.
func fuzzRequire(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    guard condition() else {
        let text = Array("fuzz invariant broken: \(message())\n".utf8)
        _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        fatalError("fuzz invariant broken")
    }
}
