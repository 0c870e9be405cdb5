import Foundation
import KeybrakeCore

/// Resend bills per email sent; a batch is a JSON array of emails.
/// Paths are relative to the Resend API root (`/emails`).
public struct ResendPricer: Sendable {
    public var pricePerEmail: MicroUSD

    public init(pricePerEmail: MicroUSD = MicroUSD(900)) { self.pricePerEmail = pricePerEmail }

    public func price(method: String, normalizedPath: String, jsonBody: Data) throws(KeybrakeError) -> PricingDecision {
        guard method.uppercased() == "POST" else { return .free }
        switch normalizedPath {
        case "/emails": return try price(rule: .resendEmail, jsonBody: jsonBody)
        case "/emails/batch": return try price(rule: .resendBatch, jsonBody: jsonBody)
        default: return .free
        }
    }

    /// Prices a POST by its registry rule (`EndpointRegistry.resend`).
    public func price(rule: PricingRule, jsonBody: Data) throws(KeybrakeError) -> PricingDecision {
        switch rule {
        case .resendEmail:
            return .priced(PriceQuote(micros: pricePerEmail))
        case .resendBatch:
            guard let body = ExactJSON.parse(jsonBody), case .array(let emails) = body else {
                throw .invalidRequest("POST /emails/batch takes a JSON array of emails; Keybrake prices the batch by counting them.")
            }
            let (total, overflow) = pricePerEmail.micros.multipliedReportingOverflow(by: Int64(emails.count))
            return .priced(PriceQuote(micros: MicroUSD(overflow ? Int64.max : total)))
        default:
            return .free
        }
    }
}
