/// A set of 64-bit fingerprints (already hashes: FNV-1a of envelope ids), open addressing with linear probing:
/// no second hash per insert (Swift's `Set` runs SipHash over each — 5 % of a replay's profile), 8 bytes a slot,
/// at most half full.
struct FingerprintSet {
    private var slots: [UInt64]
    private var shift: Int
    private var hasZero = false
    /// Fingerprints held.
    private(set) var count = 0

    init() {
        self.slots = Array(repeating: 0, count: 1 << 10)
        self.shift = 64 - 10
    }

    /// Inserts `fingerprint`; returns whether it was new.
    mutating func insert(_ fingerprint: UInt64) -> Bool {
        guard fingerprint != 0 else {  // 0 marks an empty slot
            defer { self.hasZero = true }
            if !self.hasZero { self.count += 1 }
            return !self.hasZero
        }
        if (self.count + 1) * 2 > self.slots.count { self.grow() }
        // Fibonacci hashing spreads fingerprints whose low bits agree.
        let home = Int(truncatingIfNeeded: (fingerprint &* 0x9E37_79B9_7F4A_7C15) >> UInt64(self.shift))
        let inserted = self.slots.withUnsafeMutableBufferPointer { slots in
            let mask = slots.count - 1
            var index = home
            while true {
                let slot = slots[index]
                if slot == fingerprint { return false }
                if slot == 0 {
                    slots[index] = fingerprint
                    return true
                }
                index = (index + 1) & mask
            }
        }
        if inserted { self.count += 1 }
        return inserted
    }

    private mutating func grow() {
        let old = self.slots
        self.slots = Array(repeating: 0, count: old.count * 2)
        self.shift -= 1
        let zero = self.hasZero
        self.count = 0
        self.hasZero = false
        for fingerprint in old where fingerprint != 0 { _ = self.insert(fingerprint) }
        if zero { _ = self.insert(0) }
    }
}
