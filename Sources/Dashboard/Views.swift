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

/// One row of a spend table (a key, a label, or a key's day/month).
struct SpendRow {
    var keyId: String = ""
    var href: String = ""
    var label: String = ""
    var name: String = ""
    var start: String = ""
    var vendor: String = ""
    var status: String = ""
    var inactive = false
    var keyCount: Int = 1
    let spent: String
    let settled: String
    let reserved: String
    let unknown: String
    let capText: String
    let percent: String?
    let nearCap: Bool
    let atCap: Bool
    let rowClass: String
    let bar: Bar
    /// Sort key: fraction of the cap used (uncapped rows sort after capped ones with spend).
    let ratio: Double
    let spentMicros: Int64

    /// "Near" is 80% of the cap; "at cap" is 100% (nothing more can be reserved).
    static let nearThreshold = 0.8

    init(settled: MicroUSD, reserved: MicroUSD, unknown: MicroUSD, cap: MicroUSD?, uncappedScale: MicroUSD) {
        let total = settled + reserved + unknown
        spentMicros = total.micros
        spent = Format.usd(total)
        self.settled = Format.usd(settled)
        self.reserved = Format.usd(reserved)
        self.unknown = Format.usd(unknown)
        capText = cap.map(Format.usd) ?? "no cap"
        if let cap, cap.micros > 0 {
            let r = Double(total.micros) / Double(cap.micros)
            ratio = r
            percent = String(format: "%.0f%%", (r * 100).rounded(.down))
            atCap = r >= 1
            nearCap = !atCap && r >= Self.nearThreshold
        } else {
            ratio = -1
            percent = nil
            atCap = false
            nearCap = false
        }
        rowClass = atCap ? "over" : (nearCap ? "near" : "")
        bar = Bar(settled: settled, reserved: reserved, unknown: unknown, cap: cap, uncappedScale: uncappedScale)
    }
}

struct UsageView {
    let month: String
    let plan: String
    let requests: String
    let quota: String?
    let hasQuota: Bool
    let percent: String
    let nearQuota: Bool
    let rowClass: String
    let bar: Bar?
}

struct OverviewView {
    let chrome: Chrome
    let flash: Flash?
    let usage: UsageView
    let date: String
    let nearKeys: String?
    let keyRows: [SpendRow]
    let moreKeys: String?
    let labelRows: [SpendRow]
}

struct LoginView {
    let chrome: Chrome? = nil
    let flash: Flash?
    let loginCsrf: String
}

struct ErrorView {
    let chrome: Chrome?
    let flash: Flash? = nil
    let heading: String
    let message: String
}

// MARK: - Keys

struct KeyRowView {
    let id: String
    let href: String
    let label: String
    let status: String
    let vendor: String
    let policy: String
    let uncapped: Bool
    let expires: String
    let created: String
}

struct KeysView {
    let chrome: Chrome
    let flash: Flash?
    let keys: [KeyRowView]
    let firstHref: String?
    let nextHref: String?
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

struct VendorOption {
    let name: String
    let selected: Bool
}

/// The issue-a-key form's values, kept when a submission is refused so nothing has to be typed again.
struct KeyForm {
    var vendors: [VendorOption]
    var label = ""
    var endpoints = "POST /v1/charges"
    var daily = ""
    var monthly = ""
    var maxRequest = ""
    var expires = ""
    var rate = ""
    var timezone = "UTC"
    var window = String(Policy.defaultDuplicateWindowSeconds)
    var autoIdempotency = true
    var accounts = ""

    init(vendor: String = Vendor.stripe.rawValue) {
        vendors = Vendor.allCases.map { VendorOption(name: $0.rawValue, selected: $0.rawValue == vendor) }
    }
}

struct KeyNewView {
    let chrome: Chrome
    let flash: Flash?
    let form: KeyForm
}

struct KeyCreatedView {
    let chrome: Chrome
    let flash: Flash? = nil
    let id: String
    let label: String
    let vendor: String
    let token: String
    let href: String
}

struct KeyFacts {
    let id: String
    let label: String
    let status: String
    let vendor: String
    let endpoints: [String]
    let caps: String
    let uncapped: Bool
    let expires: String
    let rate: String
    let timezone: String
    let idempotency: String
    let accounts: String
    let created: String
    let revokedAt: String?
}

struct CapsForm {
    let action: String
    let revokeHref: String
    let daily: String
    let monthly: String
    let maxRequest: String
}

struct KeyView {
    let chrome: Chrome
    let flash: Flash?
    let key: KeyFacts
    let periods: [SpendRow]
    let auditHref: String
    let caps: CapsForm?
}

struct KeyRevokeView {
    let chrome: Chrome
    let flash: Flash? = nil
    let id: String
    let label: String
    let vendor: String
    let action: String
    let cancelHref: String
}

// MARK: - Audit

struct AuditFilters {
    let keyOptions: [Option]
    let vendorOptions: [Option]
    let decisionOptions: [Option]
    let outcomeOptions: [Option]
}

/// The audit list's rows are looked up directly (no reflection): they are the bulk of the busiest page.
struct AuditRowView: MustacheParent {
    let id: String
    let href: String
    let time: String
    let keyId: String
    let keyLabel: String
    let vendor: String
    let method: String
    let path: String
    let operation: String?
    let decision: String
    let errorCode: String?
    let upstreamStatus: String
    let amount: String
    let outcome: String?
    let rowClass: String

    func child(named name: String) -> Any? {
        switch name {
        case "id": id
        case "href": href
        case "time": time
        case "keyId": keyId
        case "keyLabel": keyLabel
        case "vendor": vendor
        case "method": method
        case "path": path
        case "operation": operation
        case "decision": decision
        case "errorCode": errorCode
        case "upstreamStatus": upstreamStatus
        case "amount": amount
        case "outcome": outcome
        case "rowClass": rowClass
        default: nil
        }
    }
}

struct AuditView {
    let chrome: Chrome
    let flash: Flash?
    let filters: AuditFilters
    let events: [AuditRowView]
    let firstHref: String?
    let nextHref: String?
}

struct AuditDetail {
    let id: String
    let time: String
    let keyId: String
    let keyLabel: String
    let keyHref: String?
    let vendor: String
    let method: String
    let path: String
    let operation: String?
    let decision: String
    let errorCode: String?
    let upstreamStatus: String
    let amount: String
    let original: String?
    let outcome: String?
    let idempotencyKey: String
    let idempotencyAuto: Bool
    let upstreamRequestId: String
    let runId: String
    let duplicateOf: String
    let duplicateOfHref: String?
    let resolves: String
    let resolvesHref: String?
    let resolvedBy: String
    let resolvedByHref: String?
    let overhead: String
    let upstreamLatency: String
}

struct ResolveForm {
    let action: String
    let reserved: String
    let reservedField: String
    let upstreamHint: String?
}

struct AuditEventView {
    let chrome: Chrome
    let flash: Flash?
    let event: AuditDetail
    let resolve: ResolveForm?
}

// MARK: - Vendors

struct CredentialField {
    let name: String
    let text: String
    let inputType: String
    let placeholder: String
}

struct StoredCredential {
    let fingerprint: String
    let accountSid: String?
    let updated: String
}

struct VendorView {
    let name: String
    let title: String
    let stored: StoredCredential?
    let fields: [CredentialField]
    let action: String
    let deleteHref: String
}

struct VendorsView {
    let chrome: Chrome
    let flash: Flash?
    let vendors: [VendorView]
}

struct VendorDeleteView {
    let chrome: Chrome
    let flash: Flash? = nil
    let title: String
    let fingerprint: String
    let action: String
}
