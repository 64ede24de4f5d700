import W3CTraceContext

/// A W3C trace context (`traceparent`, optional `tracestate`) the runner app handed over with an event, already
/// validated, kept as the exact text it arrived as: the agent forwards it byte for byte inside the envelope's
/// `data` (<https://www.w3.org/TR/trace-context/>).
public struct TraceContextHeaders: Sendable, Hashable {
    /// The `traceparent` value, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    public let traceparent: String
    /// The `tracestate` value, when one came with it and was valid.
    public let tracestate: String?

    /// What checking a pair of values found.
    public struct Validation: Sendable, Hashable {
        /// The context to carry, if the `traceparent` was valid.
        public var context: TraceContextHeaders?
        /// Values dropped as malformed: 0, 1 (`traceparent`, or a `tracestate` alone) or 2.
        public var invalidValues: Int
    }

    /// Longest `tracestate` taken: 32 list members of at most 256 characters each, with their separators
    /// (the spec's limit on members; a longer value is not a valid one to forward).
    public static let maximumTraceStateBytes = 32 * 257

    /// Checks `traceparent` and `tracestate` as received.
    ///
    /// A `traceparent` must be version `00`, exactly 55 characters, lower-case hex, with a non-zero trace id
    /// and span id (the spec says a receiver must ignore anything else — upper-case hex, extra fields after
    /// version 00, `ff`). A `tracestate` is kept only beside a valid `traceparent` and only when it parses
    /// (the spec: a vendor list of `key=value` members); otherwise it is dropped and counted, and the
    /// `traceparent` is still carried.
    public static func validate(traceparent: String?, tracestate: String?) -> Validation {
        guard let traceparent else {
            return Validation(context: nil, invalidValues: tracestate == nil ? 0 : 1)
        }
        guard (try? TraceContext(traceParentHeaderValue: traceparent)) != nil else {
            return Validation(context: nil, invalidValues: tracestate == nil ? 1 : 2)
        }
        guard let tracestate else {
            return Validation(context: TraceContextHeaders(traceparent: traceparent, tracestate: nil), invalidValues: 0)
        }
        let trimmed = tracestate.trimmingSpaces
        guard !trimmed.isEmpty else {
            // An empty tracestate is the same as none (the spec allows an empty header).
            return Validation(context: TraceContextHeaders(traceparent: traceparent, tracestate: nil), invalidValues: 0)
        }
        guard tracestate.utf8.count <= Self.maximumTraceStateBytes, Self.isWellFormedTraceState(tracestate),
            (try? TraceContext(traceParentHeaderValue: traceparent, traceStateHeaderValue: tracestate)) != nil
        else {
            return Validation(context: TraceContextHeaders(traceparent: traceparent, tracestate: nil), invalidValues: 1)
        }
        return Validation(context: TraceContextHeaders(traceparent: traceparent, tracestate: tracestate), invalidValues: 0)
    }
}

extension TraceContextHeaders {
    /// The spec's `tracestate` grammar (§3.3.1), which W3CTraceContext's decoder checks only loosely: at most
    /// 32 `key=value` members (empty ones between commas allowed); a key is lower-case `simple-key` or
    /// `tenant@system`; a value is 1–256 printable characters without `,` or `=`, not ending in a space.
    static func isWellFormedTraceState(_ text: String) -> Bool {
        var members = 0
        for rawMember in text.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let member = rawMember.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
            if member.isEmpty { continue }
            members += 1
            guard members <= 32, let equals = member.firstIndex(of: UInt8(ascii: "=")) else { return false }
            let key = Array(member[..<equals])
            let value = Array(member[member.index(after: equals)...])
            guard Self.isKey(key), !value.isEmpty, value.count <= 256, value.last != 0x20,
                value.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != UInt8(ascii: ",") && $0 != UInt8(ascii: "=") })
            else { return false }
        }
        return true
    }

    private static func isKey(_ key: [UInt8]) -> Bool {
        func isLowerAlpha(_ byte: UInt8) -> Bool { byte >= 0x61 && byte <= 0x7A }
        func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        func isKeyCharacter(_ byte: UInt8) -> Bool {
            isLowerAlpha(byte) || isDigit(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "*") || byte == UInt8(ascii: "/")
        }
        if let at = key.firstIndex(of: UInt8(ascii: "@")) {
            let tenant = key[..<at]
            let system = key[(at + 1)...]
            guard let tenantFirst = tenant.first, let systemFirst = system.first else { return false }
            return (isLowerAlpha(tenantFirst) || isDigit(tenantFirst)) && tenant.count <= 241 && tenant.allSatisfy(isKeyCharacter)
                && isLowerAlpha(systemFirst) && system.count <= 14 && system.allSatisfy(isKeyCharacter)
        }
        guard let first = key.first, isLowerAlpha(first), key.count <= 256 else { return false }
        return key.allSatisfy(isKeyCharacter)
    }
}

extension String {
    fileprivate var trimmingSpaces: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let start = self.firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = self.lastIndex(where: { !isSpace($0) })!
        return self[start...end]
    }
}
