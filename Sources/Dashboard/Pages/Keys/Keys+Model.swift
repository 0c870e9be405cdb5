import Foundation
import KeybrakeCore
import Mustache

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
    /// Today by hour and the last 30 days by day, in the key's time zone (its children's spend included).
    let hourChart: ChartBox
    let dayChart: ChartBox
    let auditHref: String
    let caps: CapsForm?
    /// The key's parent, for a child key.
    let parent: LinkView?
    let runs: RunsView?
}

/// A chart under the name the `chart` partial reads.
struct ChartBox {
    let chart: Chart
}

struct LinkView {
    let href: String
    let text: String
}

/// A key's children (per-run keys), newest first, with their lifetime spend against their caps.
struct RunsView {
    let count: Int
    let active: Int
    let counted: String
    let rows: [RunRow]
    let more: Bool
    let auditHref: String
}

struct RunRow {
    let id: String
    let href: String
    let label: String
    let runId: String?
    let status: String
    let expires: String
    let spend: SpendRow
    let revokeHref: String?
}

struct KeyRevokeView {
    let chrome: Chrome
    let flash: Flash? = nil
    let id: String
    let label: String
    let vendor: String
    let confirm: ConfirmForm
}
