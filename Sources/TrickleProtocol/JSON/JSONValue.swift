import TrickleRelaySupport
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A decoded JSON document, for the few small documents read whole: the client's configuration file, a control-API
/// request body, an OTLP receiver's answer. (Payloads never go through it: they are scanned, not decoded.)
///
/// Decoded with FoundationEssentials' `JSONDecoder`, so reading one needs neither `JSONSerialization` nor the rest of
/// Foundation (which would link ICU into the binary). Booleans and numbers stay apart: `true` is never `1`.
public enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    /// A number written without a fraction or exponent that fits in an `Int64`.
    case integer(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses `bytes` as one JSON document (any value at the top).
    ///
    /// - Throws: `JSONValue.SyntaxError` with the decoder's explanation.
    public static func parse(_ bytes: some Collection<UInt8>) throws(SyntaxError) -> JSONValue {
        let data = Data(bytes)
        // Strict RFC 8259 first, with our own scanner's depth bound: the decoder alone is lenient (it takes `[1,]`).
        let checked: JSONSyntaxError? = data.withUnsafeBytes { raw in
            do throws(JSONSyntaxError) {
                _ = try JSONScanner.validate(raw)
                return nil
            } catch {
                return error
            }
        }
        if let checked { throw SyntaxError(description: checked.description) }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let underlying = context.underlyingError.map { " (\($0))" } ?? ""
            throw SyntaxError(description: context.debugDescription + underlying)
        } catch {
            throw SyntaxError(description: "\(error)")
        }
    }

    /// Why a document is not JSON.
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public init(from decoder: any Decoder) throws {
        if let container = try? decoder.container(keyedBy: Key.self) {
            var object: [String: JSONValue] = [:]
            for key in container.allKeys { object[key.stringValue] = try container.decode(JSONValue.self, forKey: key) }
            self = .object(object)
            return
        }
        if var container = try? decoder.unkeyedContainer() {
            var array: [JSONValue] = []
            if let count = container.count { array.reserveCapacity(count) }
            while !container.isAtEnd { array.append(try container.decode(JSONValue.self)) }
            self = .array(array)
            return
        }
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? container.decode(Int64.self) {
            self = .integer(integer)
        } else if let double = try? container.decode(Double.self) {
            self = .double(double)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The members, when this is an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The text, when this is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The number as a `Double`, when this is a number (never for a boolean).
    public var doubleValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// Whether this is `null`.
    public var isNull: Bool { self == .null }
}
