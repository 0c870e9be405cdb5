/// Text that people read in lists, the dashboard and CSV exports (labels, tenant names, run ids). Control characters
/// and bidirectional controls are refused there: an agent or a tenant could otherwise write a label that renders as
/// another (U+202E turns `txt.exe` around) or breaks a log line or a CSV row (DESIGN §16).
public enum DisplayText {
    /// The first scalar such text may not hold: C0 and C1 controls, DEL, and the bidi controls
    /// (LRM, RLM, ALM, LRE…RLO, LRI…PDI).
    public static func forbiddenScalar(in text: String) -> Unicode.Scalar? {
        text.unicodeScalars.first { s in
            switch s.value {
            case 0x00...0x1F, 0x7F...0x9F: true
            case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
            default: false
            }
        }
    }

    /// A 400 naming the field and the character, or nil when the text is fine.
    public static func refusal(_ text: String, field: String) -> KeybrakeError? {
        guard let s = forbiddenScalar(in: text) else { return nil }
        let code = "U+" + String(s.value, radix: 16, uppercase: true).leftPadded(to: 4)
        return .invalidRequest("\(field) must not contain control or bidirectional-control characters (found \(code)).", field: field)
    }
}

extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
