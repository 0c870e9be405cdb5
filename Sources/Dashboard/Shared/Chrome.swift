import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

extension DashboardController {
    /// The page chrome (tenant name, CSRF token for the sign-out form).
    func chrome(_ session: DashboardSession, _ tab: Tab) -> Chrome {
        var chrome = Chrome(tenantName: session.tenantName, csrf: session.csrfToken)
        switch tab {
        case .overview: chrome.navOverview = true
        case .keys: chrome.navKeys = true
        case .audit: chrome.navAudit = true
        case .vendors: chrome.navVendors = true
        case .webhooks: chrome.navWebhooks = true
        case .adminTokens: chrome.navAdminTokens = true
        }
        return chrome
    }

    enum Tab { case overview, keys, audit, vendors, webhooks, adminTokens }

    func notice(_ request: Request) -> Flash? {
        request.uri.queryParameters["notice"].flatMap { Flash.notices[String($0)] }.map(Flash.notice)
    }
}
