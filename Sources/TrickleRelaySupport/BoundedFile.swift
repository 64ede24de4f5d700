#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if canImport(Glibc)
private let systemRead = Glibc.read
#else
private let systemRead = Darwin.read
#endif

/// Reads a small file whole, refusing one larger than a bound instead of taking whatever memory it asks for.
public enum BoundedFile {
    /// Why a file could not be read.
    public struct ReadError: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: Sendable, Equatable {
            /// Missing, not permitted, a directory, or a read error; `reason` says which.
            case unreadable
            /// Larger than the bound.
            case tooLarge
        }

        public var code: Code
        public var path: String
        public var reason: String

        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// The file's bytes, at most `maximumBytes` of them.
    ///
    /// - Throws: ``ReadError`` `.unreadable` (with the system's reason) or `.tooLarge`.
    public static func read(path: String, maximumBytes: Int) throws(ReadError) -> [UInt8] {
        func unreadable(_ code: Int32) -> ReadError {
            ReadError(code: .unreadable, path: path, reason: "cannot be read (\(String(cString: strerror(code))))")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(errno) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { systemRead(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                // A directory answers EISDIR here.
                if errno == EINTR { continue }
                throw unreadable(errno)
            }
            if count == 0 { return bytes }
            // One byte past the bound is enough to know; never read further.
            guard bytes.count + count <= maximumBytes else {
                throw ReadError(code: .tooLarge, path: path, reason: "is larger than \(maximumBytes) bytes")
            }
            bytes.append(contentsOf: chunk[..<count])
        }
    }
}
