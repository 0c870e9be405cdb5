import Foundation
import KeybrakeCore
import Mustache

// View models handed to the templates. Every field that reaches HTML is a plain value rendered with `{{ }}`.
// Field names differ between nesting levels on purpose: Mustache looks a missing name up in the enclosing
// objects, so a nil `percent` on a row must not find another object's `percent`.

struct Chrome {
    let tenantName: String
    let csrf: String
    var navOverview = false
    var navKeys = false
    var navAudit = false
    var navVendors = false
    var navWebhooks = false
    var navAdminTokens = false
}

struct Flash {
    let kind: String
    let message: String
    /// Stored, not computed: templates read fields through reflection, which sees stored properties only.
    let role: String

    static func notice(_ m: String) -> Flash { Flash(kind: "notice", message: m, role: "status") }
    static func error(_ m: String) -> Flash { Flash(kind: "error", message: m, role: "alert") }

    /// Messages after a redirect come from a fixed list keyed by the query, so no text is reflected from the URL.
    static let notices: [String: String] = [
        "signed_out": "You are signed out.",
        "caps_saved": "Caps saved. They apply from the next proxied request.",
        "revoked": "Key revoked. Its next proxied request is refused with 401 vault_key_revoked.",
        "resolved": "Outcome recorded; the reservation is settled or released accordingly.",
        "credentials_saved": "Credentials saved. Proxied requests use them from now on.",
        "credentials_deleted": "Credentials deleted.",
        "ping_queued": "Test event queued: it is delivered within a few seconds and listed below.",
        "tokens_revoked": "Every other admin token is revoked; their dashboard sessions have ended.",
    ]
}

/// A stacked bar in SVG units: 1000 = the cap (or, for uncapped rows, the largest spend in the table).
struct Bar {
    let settledW: Int
    let reservedX: Int
    let reservedW: Int
    let unknownX: Int
    let unknownW: Int
    let capped: Bool
    let text: String

    init(settled: MicroUSD, reserved: MicroUSD, unknown: MicroUSD, cap: MicroUSD?, uncappedScale: MicroUSD) {
        let spent = settled.micros + reserved.micros + unknown.micros
        // Over the cap (a settled amount can exceed an estimate), the whole bar is the spend.
        let scale = max(cap?.micros ?? uncappedScale.micros, spent, 1)
        func units(_ m: Int64) -> Int { Int((Double(m) * 1000 / Double(scale)).rounded()) }
        settledW = units(settled.micros)
        reservedX = settledW
        reservedW = units(reserved.micros)
        unknownX = settledW + reservedW
        unknownW = max(0, min(1000 - unknownX, units(unknown.micros)))
        capped = cap != nil
        let total = Format.usd(MicroUSD(spent))
        text = cap.map { "\(total) of \(Format.usd($0)) cap" } ?? "\(total), no cap"
    }

    /// A plain usage bar (requests against a quota).
    init(used: Int64, of total: Int64) {
        let w = total > 0 ? Int(min(1000, (Double(used) * 1000 / Double(total)).rounded())) : 0
        settledW = w
        reservedX = w
        reservedW = 0
        unknownX = w
        unknownW = 0
        capped = true
        text = "\(Format.count(used)) of \(Format.count(total)) requests"
    }
}

/// How full something is against its limit (a key's cap, the plan's quota), as every spend and usage row shows it.
struct Meter {
    /// "Near" from 80 % of the limit; "reached" at 100 %.
    static let nearThreshold = 0.8

    let ratio: Double

    /// Percent used, rounded down: "79%" until the row is really at 80.
    var percent: String { String(format: "%.0f%%", (ratio * 100).rounded(.down)) }
    var reached: Bool { ratio >= 1 }
    var near: Bool { !reached && ratio >= Self.nearThreshold }
    /// The row's CSS class: `over` at the limit, `near` close to it.
    var rowClass: String { reached ? "over" : (near ? "near" : "") }
}

/// The `confirm_form` partial: posts to `action` (with the session's CSRF token) or goes back to `cancelHref`.
struct ConfirmForm {
    let action: String
    let buttonId: String
    let buttonText: String
    let cancelHref: String
}

struct ErrorView {
    let chrome: Chrome?
    let flash: Flash? = nil
    let heading: String
    let message: String
}

struct Option: MustacheParent {
    let value: String
    let text: String
    let selected: Bool

    func child(named name: String) -> Any? {
        switch name {
        case "value": value
        case "text": text
        case "selected": selected
        default: nil
        }
    }
}
