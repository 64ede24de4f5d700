#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Creates a directory of the relay's own (a spool, a subscription store) with its missing parents, mode 0700 for
/// those it creates, and says in words what is in the way: the system's reason and the path it met it at, never a
/// library's error dump.
public enum PrivateDirectory {
    /// Why the directory could not be made.
    public struct CreationError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The path (the directory or one of its parents) where it failed.
        public var path: String
        /// What is wrong there, e.g. "exists and is not a directory", "Permission denied".
        public var reason: String

        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }

        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// Makes `path` a directory (and its missing parents); an existing directory is left as it is.
    /// - Throws: ``CreationError`` naming the component that failed and why.
    public static func create(_ path: String) throws(CreationError) {
        guard !path.isEmpty else { throw CreationError(path: path, reason: "is empty") }
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in components {
            prefix += "/" + component
            if mkdir(prefix, 0o700) == 0 { continue }
            let code = errno
            guard code == EEXIST else { throw CreationError(path: Self.shown(prefix, of: path), reason: String(cString: strerror(code))) }
            // Something is there: it must be a directory (or a link to one).
            let descriptor = open(prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard descriptor >= 0 else {
                let reason = errno == ENOTDIR ? "exists and is not a directory" : String(cString: strerror(errno))
                throw CreationError(path: Self.shown(prefix, of: path), reason: reason)
            }
            close(descriptor)
        }
    }

    /// A relative prefix without the "./" it was built with.
    private static func shown(_ prefix: String, of path: String) -> String {
        path.hasPrefix("/") || !prefix.hasPrefix("./") ? prefix : String(prefix.dropFirst(2))
    }
}
