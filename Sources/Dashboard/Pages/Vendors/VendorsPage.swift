import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Vault

extension DashboardController {
    static func fields(_ vendor: Vendor) -> [CredentialField] {
        switch vendor {
        case .stripe: [CredentialField(name: "secret_key", text: "Secret key", inputType: "password", placeholder: "sk_live_… or rk_live_…")]
        case .twilio: [CredentialField(name: "account_sid", text: "Account SID", inputType: "text", placeholder: "AC…"),
                       CredentialField(name: "auth_token", text: "Auth token", inputType: "password", placeholder: "")]
        case .resend: [CredentialField(name: "api_key", text: "API key", inputType: "password", placeholder: "re_…")]
        }
    }

    static func title(_ vendor: Vendor) -> String {
        switch vendor {
        case .stripe: "Stripe"
        case .twilio: "Twilio"
        case .resend: "Resend"
        }
    }

    func vendor(_ context: KeybrakeRequestContext) throws -> Vendor {
        guard let v = Vendor(rawValue: context.parameters.get("vendor") ?? "") else { throw KeybrakeError.notFound("vendor") }
        return v
    }

    func vendorsPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        return try await renderVendors(session: session, flash: notice(request), status: .ok, context: context)
    }

    func renderVendors(session: DashboardSession, flash: Flash?, status: HTTPResponse.Status, context: KeybrakeRequestContext) async throws -> Response {
        let chrome = chrome(session, .vendors)
        let tenantId = session.tenantId
        async let stripe = db(context) { try await credentials.summary(vendor: .stripe, tenantId: tenantId, logger: context.logger) }
        async let twilio = db(context) { try await credentials.summary(vendor: .twilio, tenantId: tenantId, logger: context.logger) }
        async let resend = db(context) { try await credentials.summary(vendor: .resend, tenantId: tenantId, logger: context.logger) }
        let summaries: [Vendor: CredentialSummary?] = [.stripe: try await stripe, .twilio: try await twilio, .resend: try await resend]
        var views: [VendorView] = []
        for vendor in Vendor.allCases {
            let summary = summaries[vendor] ?? nil
            views.append(VendorView(
                name: vendor.rawValue, title: Self.title(vendor),
                stored: summary.map { StoredCredential(fingerprint: $0.fingerprint, accountSid: $0.accountSid, updated: Format.time($0.updatedAt)) },
                fields: Self.fields(vendor), action: "/dashboard/vendors/" + vendor.rawValue,
                deleteHref: "/dashboard/vendors/" + vendor.rawValue + "/delete"
            ))
        }
        return renderer.render("vendors", VendorsView(chrome: chrome, flash: flash, vendors: views), status: status)
    }

    func saveCredentials(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, form) = try await verifiedForm(request, context)
        let vendor = try vendor(context)
        var fields: [String: JSONValue] = [:]
        for name in VendorCredentials.allowedFields(vendor) { fields[name] = form[name].map(JSONValue.string) ?? .null }
        let parsed: VendorCredentials
        do {
            parsed = try VendorCredentials.parse(vendor, JSONObjectReader(fields))
        } catch {
            // The secret is never echoed back into the page.
            return try await renderVendors(session: session, flash: .error("\(Self.title(vendor)): \(error.message)"), status: .badRequest, context: context)
        }
        _ = try await db(context) { try await credentials.put(parsed, tenantId: session.tenantId, logger: context.logger) }
        return Page.redirect("/dashboard/vendors?notice=credentials_saved")
    }

    func deleteCredentialsPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let vendor = try vendor(context)
        let chrome = chrome(session, .vendors)
        guard let summary = try await db(context, { try await credentials.summary(vendor: vendor, tenantId: session.tenantId, logger: context.logger) }) else {
            return Page.redirect("/dashboard/vendors")
        }
        return renderer.render("vendor_delete", VendorDeleteView(
            chrome: chrome, title: Self.title(vendor), fingerprint: summary.fingerprint,
            confirm: ConfirmForm(action: "/dashboard/vendors/" + vendor.rawValue + "/delete", buttonId: "confirm-delete",
                                 buttonText: "Delete credentials", cancelHref: "/dashboard/vendors")
        ))
    }

    func deleteCredentials(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        let vendor = try vendor(context)
        _ = try await db(context) { try await credentials.delete(vendor: vendor, tenantId: session.tenantId, logger: context.logger) }
        return Page.redirect("/dashboard/vendors?notice=credentials_deleted")
    }
}
