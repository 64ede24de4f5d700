/// The one rule for every token and key file (`serve --token-file`, `runner --token-file`, `client
/// --stream-token-file` and `--api-key-file`): read bounded, trimmed of surrounding whitespace, and non-empty.
///
/// A secret that was asked for is never silently dropped: a file that cannot be read, is empty or is too large is
/// an error naming the file, which the commands turn into exit 64 at start.
public enum SecretFile {
    /// The largest secret file read: tokens and API keys are tens of bytes; this leaves room for a JWT.
    public static let maximumBytes = 16 * 1024

    /// Why a secret file was refused.
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: Sendable, Equatable {
            case unreadable
            case empty
            case tooLarge
            case notText
        }

        public var code: Code
        public var path: String
        public var reason: String

        public var description: String { "\(self.path) \(self.reason)" }
    }

    /// The secret in `path`: its text without surrounding whitespace.
    ///
    /// - Throws: ``Failure`` naming the file and what to do.
    public static func read(path: String) throws(Failure) -> String {
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(path: path, maximumBytes: Self.maximumBytes)
        } catch {
            switch error.code {
            case .unreadable:
                throw Failure(code: .unreadable, path: path, reason: error.reason + "; check the path and its permissions")
            case .tooLarge:
                throw Failure(code: .tooLarge, path: path, reason: "is larger than \(Self.maximumBytes) bytes: it should hold the secret alone")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Failure(code: .notText, path: path, reason: "is not UTF-8 text: put the secret on its first line")
        }
        let secret = TextParsing.trimmed(text)
        guard !secret.isEmpty else { throw Failure(code: .empty, path: path, reason: "is empty: put the secret on its first line") }
        return secret
    }
}
