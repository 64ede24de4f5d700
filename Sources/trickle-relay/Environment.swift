import Foundation

/// Reads the process environment.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }

    /// A secret read now: from `file` when one is named (trimmed; `nil` if unreadable or empty), else from the
    /// first of `variables` that is set.
    static func secret(file: String?, variables: [String]) -> String? {
        if let file {
            let text = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            return text.flatMap { $0.isEmpty ? nil : $0 }
        }
        return variables.lazy.compactMap(Self.value).first
    }
}
