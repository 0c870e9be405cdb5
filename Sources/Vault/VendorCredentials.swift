import Foundation
import HTTPLayer
import KeybrakeCore

/// A tenant's real secret for one vendor. Only ever held decrypted in memory, never logged
/// (`description` is redacted) and never returned by the API beyond its fingerprint.
public enum VendorCredentials: Sendable, Equatable, CustomStringConvertible {
    case stripe(secretKey: String)
    case twilio(accountSid: String, authToken: String)
    case resend(apiKey: String)

    public var vendor: Vendor {
        switch self {
        case .stripe: .stripe
        case .twilio: .twilio
        case .resend: .resend
        }
    }

    public var description: String { "VendorCredentials(\(vendor.rawValue), \(fingerprint))" }

    /// `…last4` of the main secret: enough to tell keys apart, useless to an attacker.
    public var fingerprint: String {
        let secret: String = switch self {
        case .stripe(let key): key
        case .twilio(_, let token): token
        case .resend(let key): key
        }
        return "…" + secret.suffix(4)
    }

    /// Account SID for Twilio (public; shown alongside the fingerprint).
    public var accountSid: String? {
        if case .twilio(let sid, _) = self { return sid }
        return nil
    }

    /// Fields accepted by PUT /v1/vendors/{vendor}/credentials, per vendor.
    public static func allowedFields(_ vendor: Vendor) -> Set<String> {
        switch vendor {
        case .stripe: ["secret_key"]
        case .twilio: ["account_sid", "auth_token"]
        case .resend: ["api_key"]
        }
    }

    /// Validates the shape of a vendor's secret as sent to the admin API.
    public static func parse(_ vendor: Vendor, _ json: JSONObjectReader) throws(KeybrakeError) -> VendorCredentials {
        try json.rejectUnknown(allowed: allowedFields(vendor))
        switch vendor {
        case .stripe:
            let key = try json.string("secret_key", required: true, maxLength: 512) ?? ""
            guard (key.hasPrefix("sk_") || key.hasPrefix("rk_")), key.count >= 12, isTokenish(key) else {
                throw .invalidRequest("secret_key must be a Stripe secret or restricted key (sk_… or rk_…).", field: "secret_key")
            }
            return .stripe(secretKey: key)
        case .twilio:
            let sid = try json.string("account_sid", required: true, maxLength: 64) ?? ""
            guard sid.count == 34, sid.hasPrefix("AC"), sid.dropFirst(2).allSatisfy({ $0.isASCII && $0.isHexDigit }) else {
                throw .invalidRequest("account_sid must be a Twilio Account SID (AC followed by 32 hex digits).", field: "account_sid")
            }
            let token = try json.string("auth_token", required: true, maxLength: 256) ?? ""
            guard token.count >= 16, isTokenish(token) else {
                throw .invalidRequest("auth_token must be the account's auth token (at least 16 characters, no spaces).", field: "auth_token")
            }
            return .twilio(accountSid: sid, authToken: token)
        case .resend:
            let key = try json.string("api_key", required: true, maxLength: 512) ?? ""
            guard key.hasPrefix("re_"), key.count >= 8, isTokenish(key) else {
                throw .invalidRequest("api_key must be a Resend API key (re_…).", field: "api_key")
            }
            return .resend(apiKey: key)
        }
    }

    static func isTokenish(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }
    }

    // Plaintext serialisation that gets sealed.
    struct Stored: Codable {
        var secretKey: String?
        var accountSid: String?
        var authToken: String?
        var apiKey: String?
    }

    func serialized() throws -> Data {
        let stored: Stored = switch self {
        case .stripe(let key): Stored(secretKey: key)
        case .twilio(let sid, let token): Stored(accountSid: sid, authToken: token)
        case .resend(let key): Stored(apiKey: key)
        }
        return try JSONEncoder().encode(stored)
    }

    static func deserialize(_ data: Data, vendor: Vendor) throws -> VendorCredentials {
        let s = try JSONDecoder().decode(Stored.self, from: data)
        switch vendor {
        case .stripe:
            guard let k = s.secretKey else { throw CredentialSealer.SealError.authenticationFailed }
            return .stripe(secretKey: k)
        case .twilio:
            guard let sid = s.accountSid, let t = s.authToken else { throw CredentialSealer.SealError.authenticationFailed }
            return .twilio(accountSid: sid, authToken: t)
        case .resend:
            guard let k = s.apiKey else { throw CredentialSealer.SealError.authenticationFailed }
            return .resend(apiKey: k)
        }
    }
}
