/// Stripe operation names (as the SDKs call them) and the endpoints they stand for,
/// so a policy can say `charges.create` and an error can say which operation was refused.
public enum StripeOperations {
    /// SDK resource name → URL path under /v1.
    static let resources: [String: String] = [
        "accounts": "accounts", "application_fees": "application_fees", "balance_transactions": "balance_transactions",
        "charges": "charges", "checkout.sessions": "checkout/sessions", "coupons": "coupons",
        "credit_notes": "credit_notes", "customers": "customers", "disputes": "disputes", "events": "events",
        "invoice_items": "invoiceitems", "invoices": "invoices", "payment_intents": "payment_intents",
        "payment_links": "payment_links", "payment_methods": "payment_methods", "payouts": "payouts",
        "prices": "prices", "products": "products", "promotion_codes": "promotion_codes", "quotes": "quotes",
        "refunds": "refunds", "setup_intents": "setup_intents", "subscription_items": "subscription_items",
        "subscriptions": "subscriptions", "tax_rates": "tax_rates", "topups": "topups", "transfers": "transfers",
        "webhook_endpoints": "webhook_endpoints",
    ]

    /// Actions that are a POST to `/v1/<resource>/{id}/<action>`.
    static let instanceActions: Set<String> = [
        "attach", "detach", "cancel", "capture", "confirm", "finalize_invoice", "pay", "send_invoice",
        "void_invoice", "mark_uncollectible", "increment_authorization", "verify_microdeposits", "expire", "close",
        "reverse", "resume", "apply_customer_balance",
    ]

    /// Maps `charges.create` → ("POST", "/v1/charges"); nil when unknown.
    public static func endpoint(forOperation op: String) -> (method: String, path: String)? {
        guard let dot = op.lastIndex(of: ".") else { return nil }
        let resourceName = String(op[..<dot])
        let action = String(op[op.index(after: dot)...])
        guard let resource = resources[resourceName] else { return nil }
        let base = "/v1/\(resource)"
        switch action {
        case "create": return ("POST", base)
        case "list": return ("GET", base)
        case "search": return ("GET", base + "/search")
        case "retrieve": return ("GET", base + "/*")
        case "update", "modify": return ("POST", base + "/*")
        case "delete", "del": return ("DELETE", base + "/*")
        case "*": return ("*", base + "/**")
        default:
            guard instanceActions.contains(action) else { return nil }
            let pathAction = action == "finalize_invoice" ? "finalize" : action == "void_invoice" ? "void" : action == "send_invoice" ? "send" : action
            return ("POST", base + "/*/" + pathAction)
        }
    }

    /// The operation a request performs, for error messages ("refunds.create"); nil if not recognisable.
    public static func operationName(method: String, normalizedPath: String) -> String? {
        let parts = PathNormalizer.segments(normalizedPath).map(String.init)
        guard parts.first == "v1", parts.count >= 2 else { return nil }
        var rest = Array(parts.dropFirst())
        var resourceName: String?
        if rest.count >= 2, let name = resources.first(where: { $0.value == rest[0] + "/" + rest[1] })?.key {
            resourceName = name
            rest.removeFirst(2)
        } else if let name = resources.first(where: { $0.value == rest[0] })?.key {
            resourceName = name
            rest.removeFirst()
        }
        guard let resource = resourceName else { return nil }
        switch (method, rest.count) {
        case ("POST", 0): return "\(resource).create"
        case ("GET", 0): return "\(resource).list"
        case ("GET", 1): return rest[0] == "search" ? "\(resource).search" : "\(resource).retrieve"
        case ("POST", 1): return "\(resource).update"
        case ("DELETE", 1): return "\(resource).delete"
        case ("POST", 2):
            let action = rest[1]
            let named = ["finalize": "finalize_invoice", "void": "void_invoice", "send": "send_invoice"][action] ?? action
            return "\(resource).\(named)"
        default: return nil
        }
    }
}
