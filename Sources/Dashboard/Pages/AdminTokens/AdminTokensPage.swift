import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

/// `/dashboard/admin-tokens`: the tenant's live admin tokens (as `GET /v1/admin-tokens`) and "revoke every other"
/// (as `POST /v1/admin-tokens/revoke-others`). Dashboard sessions end with their token: each page reads the
/// session joined to its token's status.
extension DashboardController {
    func adminTokensPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let session = try await session(request, context)
        let tokens = try await db(context) { try await tenants.adminTokens(tenantId: session.tenantId, logger: context.logger) }
        let rows = tokens.map {
            AdminTokenRow(id: $0.id, label: $0.label, created: Format.time($0.createdAt), lastUsed: $0.lastUsedAt.map(Format.time),
                          current: $0.id == session.adminTokenId)
        }
        return renderer.render("admin_tokens", AdminTokensView(
            chrome: chrome(session, .adminTokens), flash: notice(request), tokens: rows,
            hasOthers: rows.contains { !$0.current }
        ))
    }

    func revokeOtherAdminTokens(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (session, _) = try await verifiedForm(request, context)
        _ = try await db(context) {
            try await tenants.revokeAdminTokens(tenantId: session.tenantId, except: session.adminTokenId, logger: context.logger)
        }
        return Page.redirect("/dashboard/admin-tokens?notice=tokens_revoked")
    }
}
