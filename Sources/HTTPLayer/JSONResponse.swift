import Foundation
import Hummingbird
import KeybrakeCore

/// Encodes admin API responses: snake_case keys, RFC 3339 UTC dates, explicit nulls where a type says so.
public enum JSONResponse {
    public static func make(_ status: HTTPResponse.Status = .ok, _ body: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(RFC3339.format(date))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(body)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}

/// A dollar amount written as an exact JSON number (`12.5`, `0.0083`), from integer micro-USD.
public struct USDAmount: Encodable, Sendable, Equatable {
    public let micros: MicroUSD
    public init(_ micros: MicroUSD) { self.micros = micros }
    public init?(_ micros: MicroUSD?) {
        guard let micros else { return nil }
        self.micros = micros
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(Decimal(string: micros.dollarString) ?? 0)
    }
}

/// Encodes an Optional as an explicit `null` instead of omitting the key, so every response has one shape.
@propertyWrapper
public struct NullEncoded<T: Encodable & Sendable>: Encodable, Sendable {
    public var wrappedValue: T?
    public init(wrappedValue: T?) { self.wrappedValue = wrappedValue }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let v = wrappedValue { try c.encode(v) } else { try c.encodeNil() }
    }
}
