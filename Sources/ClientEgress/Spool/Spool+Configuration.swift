extension Spool {
    /// Configuration of a ``Spool``.
    public struct Configuration: Sendable {
        /// The directory holding the spool's segment files, its state file and its lock. Created if missing.
        public var directory: String
        /// The spool holds at most this many bytes of undelivered records; past it new records are refused
        /// and counted (``Stats/overflowed``). Default 1 GiB.
        public var maximumBytes: Int
        /// A segment file is closed and a new one started once it reaches this size; delivered segments are
        /// deleted whole. Default 16 MiB.
        public var segmentBytes: Int
        /// Whether every append is `fsync`ed. Without it, a `kill -9` still loses nothing (the data is in the
        /// page cache); a power cut may lose the last appends. Default `false`.
        public var syncsEveryAppend: Bool

        /// Creates a configuration; every parameter but the directory has the documented default.
        public init(directory: String, maximumBytes: Int = 1 << 30, segmentBytes: Int = 16 << 20, syncsEveryAppend: Bool = false) {
            self.directory = directory
            self.maximumBytes = maximumBytes
            self.segmentBytes = segmentBytes
            self.syncsEveryAppend = syncsEveryAppend
        }
    }

    /// A place in the spool: a segment file and a byte offset in it.
    public struct Cursor: Sendable, Hashable, Comparable, CustomStringConvertible {
        public var segment: Int
        public var offset: Int

        public init(segment: Int, offset: Int) {
            self.segment = segment
            self.offset = offset
        }

        public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset) }
        public var description: String { "\(self.segment):\(self.offset)" }
    }

    /// A read position on the events channel: a segment seq and a line number in it (from 1).
    public struct ChannelPosition: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
        public var seq: Int
        public var line: Int

        public init(seq: Int, line: Int) {
            self.seq = seq
            self.line = line
        }

        public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.seq, lhs.line) < (rhs.seq, rhs.line) }
        public var description: String { "seq \(self.seq) line \(self.line)" }
    }

    /// Counters of a spool, as a value.
    public struct Stats: Sendable, Hashable {
        /// Records appended since the spool was opened.
        public var appended = 0
        /// Records refused because the spool was full.
        public var overflowed = 0
        /// Records refused because writing them failed (disk full, quota, I/O error); the partial write was cut back.
        public var writeFailed = 0
        /// Records handed to the sink behind the spool (re-deliveries after a restart included).
        public var delivered = 0
        /// Torn last lines found (and cut off) when the spool was opened after a crash.
        public var tornLines = 0
        /// Lines that could not be read back (skipped).
        public var corruptLines = 0
        /// Segment files deleted after everything in them was accepted.
        public var segmentsDeleted = 0
        /// Bytes held now (undelivered or unacknowledged).
        public var bytes = 0
        /// Segment files held now.
        public var segments = 0
        /// Times `state.json` could not be written (logged as a failure state).
        public var stateFileFailures = 0

        public init() {}
    }
}

/// The spool cannot be used, or an operation on it failed: its directory, a file in it, or its lock.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure (callers branch on it: another spool directory, another client, or an I/O state).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The directory cannot be created or used: choose another.
        public static let unusableDirectory = Code("unusableDirectory")
        /// Another client holds the spool's lock.
        public static let inUse = Code("inUse")
        /// A read, write, sync or rename failed (a full disk, an I/O error).
        public static let io = Code("io")
        public var description: String { self.name }
    }

    public var code: Code
    /// What failed, naming the file, and what to do.
    public var description: String

    public init(_ code: Code = .io, _ description: String) {
        self.code = code
        self.description = description
    }
}
