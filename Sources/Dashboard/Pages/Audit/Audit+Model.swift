import Foundation
import KeybrakeCore
import Mustache

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
