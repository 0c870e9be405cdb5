import Foundation
import HTTPTypes
import Hummingbird
import KeybrakeCore

/// A request as its vendor will read it (DESIGN §7 "What is priced is what is forwarded"): the parameters the vendor
/// acts on, and exactly what goes upstream. Each adapter's `read` builds it by its vendor's rules or refuses the
/// request, so nothing reaches the vendor that Keybrake did not read.
struct VendorRequest: Sendable {
    /// Form parameters as the vendor merges them (Stripe: the query string of a DELETE, the body of a POST; Twilio:
    /// the body). Empty for JSON bodies.
    var parameters = FormBody()
    /// The body, forwarded unchanged: the adapter has read all of it.
    var body = Data()
    /// The query string sent upstream (nil: none).
    var upstreamQuery: String?
}

/// Reading rules the adapters share. Each refusal is a 400 `invalid_request` naming what Keybrake will not forward,
/// so the agent learns how to send it instead.
enum RequestReading {
    enum BodyType: Equatable {
        case form, json
        case other(String)
    }

    /// The body's media type, lower-cased without parameters (nil: no Content-Type).
    static func bodyType(_ headers: HTTPFields) -> BodyType? {
        guard let raw = headers[.contentType] else { return nil }
        let type = raw.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        switch type {
        case "application/x-www-form-urlencoded": return .form
        case "application/json": return .json
        default: return .other(type)
        }
    }

    /// Headers the vendor reads once: a second copy could be the one it uses. A compressed request body is not read.
    static func checkHeaders(_ headers: HTTPFields, single names: [HTTPField.Name]) throws(KeybrakeError) {
        if let encoding = headers[.contentEncoding], !encoding.isEmpty, encoding.lowercased() != "identity" {
            throw .invalidRequest("Request bodies with Content-Encoding (\(encoding.prefix(32))) are not forwarded: Keybrake reads every body it prices. Send it uncompressed.", field: "Content-Encoding")
        }
        for name in names + [.contentType] where headers[values: name].count > 1 {
            throw .invalidRequest("The header \(name.rawName) appears more than once; send it once so Keybrake and the vendor read the same value.", field: name.rawName)
        }
    }

    /// A query string on a method whose parameters Keybrake reads from the body only.
    static func refuseQuery(_ query: String?, method: String, vendor: Vendor) throws(KeybrakeError) {
        guard let query, !query.isEmpty else { return }
        throw .invalidRequest("A query string on \(method) is not forwarded: \(vendor.displayName) reads it as parameters too, and Keybrake prices the body. Send every parameter in the body.", field: "query")
    }

    /// A read (GET, HEAD): no body, and its query string forwarded as the SDKs send it (reads move no money).
    static func read(method: String, query: String?, body: Data) throws(KeybrakeError) -> VendorRequest {
        try refuseBody(body, method: method)
        return VendorRequest(upstreamQuery: query)
    }

    /// nil for an absent or empty query string (`/v1/charges?` forwards no `?`).
    static func nonEmpty(_ query: String?) -> String? { query?.isEmpty == false ? query : nil }

    static func refuseBody(_ body: Data, method: String) throws(KeybrakeError) {
        guard !body.isEmpty else { return }
        throw .invalidRequest("A body on \(method) is not forwarded. Send its parameters in the query string.", field: "body")
    }

    /// An `application/x-www-form-urlencoded` text read strictly: `name=value` pairs joined by `&`, printable ASCII,
    /// valid `%XX` escapes, names of the form `base[key][key]…`, and a name only once unless `repeatable` says it is a
    /// list. Each rule closes a reading where Keybrake and the vendor could disagree (a `;` that older Rack versions
    /// split on, `[amount]` that Rack reads as `amount`, `amount=1&amount=900` where the last wins).
    static func strictForm(_ bytes: Data, where place: String, repeatable: (String) -> Bool) throws(KeybrakeError) -> FormBody {
        for byte in bytes where byte < 0x21 || byte > 0x7E || byte == UInt8(ascii: ";") {
            let shown = byte == UInt8(ascii: ";") ? "`;`" : String(format: "byte 0x%02X", byte)
            throw .invalidRequest("The \(place) holds \(shown) unencoded; percent-encode it (the vendor may read it as a separator).", field: place)
        }
        var pairs: [(String, String)] = []
        var seen: Set<String> = []
        for field in Array(bytes).split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard let eq = field.firstIndex(of: UInt8(ascii: "=")) else {
                throw .invalidRequest("The \(place) has a parameter without `=` (`\(String(decoding: field.prefix(40), as: UTF8.self))`); send name=value.", field: place)
            }
            guard let nameBytes = strictDecode(field[..<eq]), let valueBytes = strictDecode(field[(eq + 1)...]) else {
                throw .invalidRequest("The \(place) has a malformed percent escape; encode `%` as %25.", field: place)
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard isWellFormedName(name) else {
                throw .invalidRequest("The parameter name `\(name.prefix(60))` in the \(place) is not of the form name or name[key]…; the vendor could read it as another parameter.", field: String(name.prefix(60)))
            }
            if !seen.insert(name).inserted, !name.hasSuffix("[]"), !repeatable(name) {
                throw .invalidRequest("`\(name.prefix(60))` appears more than once in the \(place); send it once so the value Keybrake checks is the one the vendor uses.", field: String(name.prefix(60)))
            }
            pairs.append((name, String(decoding: valueBytes, as: UTF8.self)))
        }
        return FormBody(pairs: pairs)
    }

    /// `+` as space, `%XX` decoded; nil for a `%` without two hex digits (the vendor would refuse or read it otherwise).
    static func strictDecode(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        guard !bytes.contains(UInt8(ascii: "%")) || bytesHaveValidEscapes(bytes) else { return nil }
        return FormBody.decode(bytes)
    }

    private static func bytesHaveValidEscapes(_ bytes: ArraySlice<UInt8>) -> Bool {
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex, Hex.value(bytes[i + 1]) != nil, Hex.value(bytes[i + 2]) != nil else { return false }
                i += 3
            } else {
                i += 1
            }
        }
        return true
    }

    /// `base` then any number of `[key]` (key may be empty, for lists): no other bracket anywhere.
    static func isWellFormedName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let open = bytes.firstIndex(of: UInt8(ascii: "[")) else {
            return !bytes.isEmpty && !bytes.contains(UInt8(ascii: "]"))
        }
        guard open > 0, !bytes[..<open].contains(UInt8(ascii: "]")) else { return false }
        var i = open
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "[") else { return false }
            guard let close = bytes[(i + 1)...].firstIndex(of: UInt8(ascii: "]")),
                  !bytes[(i + 1)..<close].contains(UInt8(ascii: "[")) else { return false }
            i = close + 1
        }
        return true
    }

    /// A JSON body read strictly: exactly one valid value, and no object with the same key twice (parsers disagree on
    /// which copy wins).
    static func strictJSON(_ body: Data) throws(KeybrakeError) -> ExactJSON {
        guard let value = ExactJSON.parse(body) else {
            throw .invalidRequest("The body is not valid JSON; Keybrake forwards only bodies it can read.", field: "body")
        }
        if let key = value.firstDuplicateKey {
            throw .invalidRequest("The JSON key `\(key.prefix(60))` appears twice in one object; send it once so Keybrake and the vendor read the same value.", field: String(key.prefix(60)))
        }
        return value
    }

    static func unsupportedBody(_ type: BodyType?, accepted: String) -> KeybrakeError {
        let named: String
        switch type {
        case .none: named = "a body without Content-Type"
        case .form: named = "a form body"
        case .json: named = "a JSON body"
        case .other(let t): named = "a `\(t.prefix(60))` body"
        }
        return .invalidRequest("\(named.prefix(1).uppercased() + named.dropFirst()) is not forwarded here: Keybrake reads and prices every body, and this endpoint takes \(accepted).", field: "Content-Type")
    }
}

extension Vendor {
    var displayName: String {
        switch self {
        case .stripe: "Stripe"
        case .twilio: "Twilio"
        case .resend: "Resend"
        }
    }
}
