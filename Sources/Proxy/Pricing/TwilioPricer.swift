import Foundation
import KeybrakeCore

/// Estimates Twilio Messages spend before sending; the real price arrives later in the response.
/// Paths are relative to the Twilio API root (`/2010-04-01/Accounts/{sid}/Messages.json`).
public struct TwilioPricer: Sendable {
    public var pricePerSegment: MicroUSD
    public var carrierFeePerSegment: MicroUSD
    public var pricePerMMS: MicroUSD

    public init(
        pricePerSegment: MicroUSD = MicroUSD(8_300),
        carrierFeePerSegment: MicroUSD = MicroUSD(3_000),
        pricePerMMS: MicroUSD = MicroUSD(22_000)
    ) {
        self.pricePerSegment = pricePerSegment
        self.carrierFeePerSegment = carrierFeePerSegment
        self.pricePerMMS = pricePerMMS
    }

    /// Per-segment price by destination (E.164 prefix, longest match wins) beyond US/Canada (`+1`, at
    /// `pricePerSegment`); destinations not listed use `internationalPerSegment`, high on purpose: an estimate below
    /// the real price lets a cap be overshot by the difference before the reported price settles it.
    public var destinationPerSegment: [String: MicroUSD] = [:]
    public var internationalPerSegment = MicroUSD(250_000)

    public func price(method: String, normalizedPath: String, form: FormBody) -> PricingDecision {
        let s = PathNormalizer.segments(normalizedPath)
        guard method.uppercased() == "POST", s.count == 4, s[0] == "2010-04-01", s[1] == "Accounts", s[3] == "Messages.json" else {
            return .free
        }
        return priceMessage(form: form)
    }

    /// The reservation for one message: per segment at the destination's price, plus the carrier fee.
    public func priceMessage(form: FormBody) -> PricingDecision {
        if form.all("MediaUrl").contains(where: { !$0.isEmpty }) {
            return .priced(PriceQuote(micros: pricePerMMS))
        }
        // Twilio sends one Body; if several arrive, price the longest so no reading under-counts.
        let segments = max(1, form.all("Body").map(Self.segments(body:)).max() ?? 1)
        let perSegment = segmentPrice(to: form.all("To").first ?? "").micros.addingReportingOverflow(carrierFeePerSegment.micros)
        let total = perSegment.partialValue.multipliedReportingOverflow(by: Int64(segments))
        let micros = perSegment.overflow || total.overflow ? Int64.max : total.partialValue
        return .priced(PriceQuote(micros: MicroUSD(micros)))
    }

    func segmentPrice(to destination: String) -> MicroUSD {
        let number = destination.hasPrefix("+") ? destination : "+" + destination
        // A destination that is not a phone number (whatsapp:, messenger:) is priced as international.
        var best: (Int, MicroUSD)? = number.hasPrefix("+1") ? (2, pricePerSegment) : nil
        for (prefix, price) in destinationPerSegment where number.hasPrefix(prefix) && prefix.count > (best?.0 ?? 0) {
            best = (prefix.count, price)
        }
        return best?.1 ?? internationalPerSegment
    }

    /// The settled cost from a Message resource: Twilio reports `"price": "-0.00830"` (negative,
    /// often null until delivery). nil when absent, unparseable or not in USD: keep the estimate.
    public static func settledPrice(responseJSON: Data) -> MicroUSD? {
        guard let message = ExactJSON.parse(responseJSON) else { return nil }
        switch message["price_unit"] {
        case nil, .null?: break
        case .string(let code)? where code.uppercased() == "USD": break
        default: return nil
        }
        let text: String
        switch message["price"] {
        case .string(let s)?: text = s
        case .number(let n)?: text = n
        default: return nil
        }
        guard let parsed = MicroUSD.parse(dollars: text, maxDecimals: 6, allowNegative: true) else { return nil }
        return MicroUSD(abs(parsed.micros))  // parse never yields Int64.min
    }

    /// SMS segments Twilio bills for: GSM-7 (extension characters take two septets) fits 160 in one
    /// segment and 153 per concatenated segment; anything else is UCS-2 at 70, then 67 per segment.
    public static func segments(body: String) -> Int {
        var septets = 0
        var isGSM = true
        for scalar in body.unicodeScalars {
            if gsmBasic.contains(scalar) {
                septets += 1
            } else if gsmExtension.contains(scalar) {
                septets += 2
            } else {
                isGSM = false
                break
            }
        }
        if isGSM {
            if septets == 0 { return 1 }
            return septets <= 160 ? 1 : (septets + 152) / 153
        }
        let units = body.utf16.count
        return units <= 70 ? 1 : (units + 66) / 67
    }

    static let gsmBasic: Set<Unicode.Scalar> = Set(
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
            + "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà").unicodeScalars
    )

    static let gsmExtension: Set<Unicode.Scalar> = Set("\u{0C}^{}\\[~]|€".unicodeScalars)
}
