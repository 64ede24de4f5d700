/// Counts per `data.type` as a replay reads them: the few types a recording has are found by comparing bytes in
/// a short list (no hashing, no slice per event); past ``listed`` distinct types the rest go to a dictionary.
struct DataTypeTally: Sendable {
    /// Distinct types compared in a list before the dictionary takes over.
    static let listed = 32

    private var types: [[UInt8]] = []
    private var listedCounts: [Int] = []
    private var others: [[UInt8]: Int] = [:]

    /// Counts one event of `type` (its contents, escapes as written).
    mutating func count(_ type: UnsafeRawBufferPointer) {
        for index in self.types.indices where Self.equal(self.types[index], type) {
            self.listedCounts[index] += 1
            return
        }
        self.add([UInt8](type), count: 1)
    }

    /// Adds another tally's counts.
    mutating func add(_ other: DataTypeTally) {
        for (index, type) in other.types.enumerated() { self.add(type, count: other.listedCounts[index]) }
        for (type, count) in other.others { self.add(type, count: count) }
    }

    /// Every type with its count.
    var counts: [(String, Int)] {
        zip(self.types, self.listedCounts).map { (String(decoding: $0, as: UTF8.self), $1) }
            + self.others.map { (String(decoding: $0.key, as: UTF8.self), $0.value) }
    }

    private mutating func add(_ type: [UInt8], count: Int) {
        if let index = self.types.firstIndex(of: type) {
            self.listedCounts[index] += count
        } else if self.types.count < Self.listed {
            self.types.append(type)
            self.listedCounts.append(count)
        } else {
            self.others[type, default: 0] += count
        }
    }

    private static func equal(_ type: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard type.count == bytes.count else { return false }
        for offset in 0..<bytes.count where type[offset] != bytes[offset] { return false }
        return true
    }
}
