import ArgumentParser
import TrickleProtocol
import TrickleRelaySupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the process environment.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }

    /// A secret read now: from `file` when one is named, else from the first of `variables` that is set.
    ///
    /// A named file follows ``SecretFile``'s rule for every command: read bounded, non-empty, else refused.
    ///
    /// - Parameter flag: The flag or field that named the file, for the message (`--token-file`).
    /// - Throws: `ValidationError` (exit 64) naming the flag, the file and the fix.
    static func secret(file: String?, flag: String, variables: [String]) throws(ValidationError) -> String? {
        if let file {
            do {
                return try SecretFile.read(path: file)
            } catch {
                throw ValidationError("\(flag) \(error.description)")
            }
        }
        return variables.lazy.compactMap(Self.value).first
    }

    /// The same, for a secret re-read while running (a rotated API key): `nil` when the file cannot be used now.
    static func currentSecret(file: String?, variables: [String]) -> String? {
        if let file { return try? SecretFile.read(path: file) }
        return variables.lazy.compactMap(Self.value).first
    }
}
