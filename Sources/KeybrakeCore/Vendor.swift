/// The money-moving APIs Keybrake fronts.
public enum Vendor: String, Sendable, Codable, CaseIterable, Hashable {
    case stripe
    case twilio
    case resend

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
