import Foundation
import Hummingbird
import KeybrakeCore

/// A JSON document read without a fixed schema, so validation can name the exact field at fault
/// and reject unknown fields instead of silently ignoring a typo like `daily_cap`.
public indirect enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    /// Numbers keep their shortest decimal spelling ("0.29"), so money is parsed exactly from it.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .number(String(i)) }
        else if let d = try? c.decode(Double.self) { self = .number(d.isFinite ? "\(d)" : "nan") }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Written back as read: numbers with their exact decimal spelling (a stored event's payload, say).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(Decimal(string: n) ?? 0)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Reads fields out of a JSON object body with errors that say which field is wrong and why.
public struct JSONObjectReader: Sendable {
    public let fields: [String: JSONValue]

    public init(_ fields: [String: JSONValue]) { self.fields = fields }

    /// Parses a request body that must be a JSON object.
    public static func decode(_ request: Request, context: KeybrakeRequestContext) async throws -> JSONObjectReader {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: context.maxUploadSize)
        } catch {
            throw KeybrakeError(status: 413, code: .bodyTooLarge, message: "The request body exceeds \(context.maxUploadSize / 1024) KiB.")
        }
        guard buffer.readableBytes > 0 else { throw KeybrakeError.invalidRequest("The request body must be a JSON object.") }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
        } catch {
            throw KeybrakeError.invalidRequest("The request body is not valid JSON.")
        }
        guard case .object(let fields) = value else {
            throw KeybrakeError.invalidRequest("The request body must be a JSON object, not \(value.typeName).")
        }
        return JSONObjectReader(fields)
    }

    /// Rejects fields outside `allowed`, naming the first unknown one.
    public func rejectUnknown(allowed: Set<String>) throws(KeybrakeError) {
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw .invalidRequest("Unknown field '\(unknown)'. Allowed: \(allowed.sorted().joined(separator: ", ")).", field: unknown)
        }
    }

    public func has(_ key: String) -> Bool { fields[key] != nil }

    /// true when the field is present and explicitly null.
    public func isNull(_ key: String) -> Bool { fields[key] == .null }

    public func string(_ key: String, required: Bool = false, maxLength: Int = 10_000) throws(KeybrakeError) -> String? {
        switch fields[key] {
        case nil, .null?:
            if required { throw .invalidRequest("\(key) is required.", field: key) }
            return nil
        case .string(let s)?:
            guard s.count <= maxLength else { throw .invalidRequest("\(key) must be at most \(maxLength) characters.", field: key) }
            // Postgres text cannot hold NUL, and no field of ours has a use for control characters.
            guard !s.unicodeScalars.contains(where: { $0.value == 0 }) else {
                throw .invalidRequest("\(key) must not contain NUL characters.", field: key)
            }
            return s
        case let other?:
            throw .invalidRequest("\(key) must be a string, not \(other.typeName).", field: key)
        }
    }

    public func bool(_ key: String) throws(KeybrakeError) -> Bool? {
        switch fields[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        case let other?: throw .invalidRequest("\(key) must be true or false, not \(other.typeName).", field: key)
        }
    }

    public func int(_ key: String) throws(KeybrakeError) -> Int? {
        switch fields[key] {
        case nil, .null?: return nil
        case .number(let n)?:
            guard let i = Int(n) else { throw .invalidRequest("\(key) must be a whole number.", field: key) }
            return i
        case let other?: throw .invalidRequest("\(key) must be a whole number, not \(other.typeName).", field: key)
        }
    }

    /// An array of whole numbers; nil when absent or null.
    public func intArray(_ key: String, maxCount: Int = 100) throws(KeybrakeError) -> [Int]? {
        switch fields[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            guard items.count <= maxCount else { throw .invalidRequest("\(key) may hold at most \(maxCount) entries.", field: key) }
            var out: [Int] = []
            for item in items {
                guard case .number(let n) = item, let i = Int(n) else { throw .invalidRequest("\(key) must be an array of whole numbers.", field: key) }
                out.append(i)
            }
            return out
        case let other?: throw .invalidRequest("\(key) must be an array of whole numbers, not \(other.typeName).", field: key)
        }
    }

    /// A string people read (a label, a name, a run id): `string`, and no control or bidi-control characters.
    public func displayText(_ key: String, required: Bool = false, maxLength: Int = 10_000) throws(KeybrakeError) -> String? {
        guard let s = try string(key, required: required, maxLength: maxLength) else { return nil }
        if let refusal = DisplayText.refusal(s, field: key) { throw refusal }
        return s
    }

    public func stringArray(_ key: String, required: Bool = false) throws(KeybrakeError) -> [String]? {
        switch fields[key] {
        case nil, .null?:
            if required { throw .invalidRequest("\(key) is required.", field: key) }
            return nil
        case .array(let items)?:
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item, !s.unicodeScalars.contains(where: { $0.value == 0 }) else {
                    throw .invalidRequest("\(key) must be an array of strings (without NUL characters).", field: key)
                }
                out.append(s)
            }
            return out
        case let other?: throw .invalidRequest("\(key) must be an array of strings, not \(other.typeName).", field: key)
        }
    }

    /// Decimal dollars from a JSON number or a decimal string, exact to `maxDecimals` places.
    public func usd(_ key: String, maxDecimals: Int) throws(KeybrakeError) -> MicroUSD? {
        let text: String
        switch fields[key] {
        case nil, .null?: return nil
        case .number(let n)?: text = n
        case .string(let s)?: text = s
        case let other?: throw .invalidRequest("\(key) must be a dollar amount, not \(other.typeName).", field: key)
        }
        guard let parsed = MicroUSD.parse(dollars: text, maxDecimals: maxDecimals, allowNegative: true) else {
            throw .invalidRequest("\(key) must be a dollar amount with at most \(maxDecimals) decimal places.", field: key)
        }
        guard parsed.micros >= 0 else { throw .invalidRequest("\(key) must not be negative.", field: key) }
        return parsed
    }

    /// An RFC 3339 timestamp.
    public func timestamp(_ key: String) throws(KeybrakeError) -> Date? {
        guard let text = try string(key, maxLength: 64) else { return nil }
        guard let date = RFC3339.parse(text) else {
            throw .invalidRequest("\(key) must be an RFC 3339 timestamp such as 2026-07-01T00:00:00Z.", field: key)
        }
        return date
    }
}

/// RFC 3339 timestamps, always written in UTC with a `Z`.
public enum RFC3339 {
    public static func parse(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }

    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }
}
