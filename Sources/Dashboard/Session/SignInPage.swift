import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

extension DashboardController {
    func loginPage(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        if let cookie = request.cookies[Self.sessionCookie]?.value,
           try await db(context, { try await sessions.session(cookie: cookie, logger: context.logger) }) != nil {
            return Page.redirect("/dashboard")
        }
        return renderLogin(request, flash: notice(request), status: .ok)
    }

    func renderLogin(_ request: Request, flash: Flash?, status: HTTPResponse.Status) -> Response {
        let loginToken = SessionStore.randomToken()
        var response = renderer.render("login", LoginView(flash: flash, loginCsrf: loginToken), status: status)
        response.setCookie(Self.cookie(Self.loginCookie, loginToken, path: "/dashboard/login", maxAge: 3600, request: request))
        return response
    }

    func login(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let form = try await FormBody.read(request, context: context)
        // Double-submit token: a page on another site cannot read our cookie to copy it into its form.
        guard let cookie = request.cookies[Self.loginCookie]?.value, let field = form["login_csrf"], constantTimeEquals(cookie, field) else {
            return renderLogin(request, flash: .error("The sign-in form expired or your browser blocked its cookie. Allow cookies for this site and try again."),
                               status: .forbidden)
        }
        guard let token = form.nonEmpty("token") else {
            return renderLogin(request, flash: .error("Paste an admin token (kb_admin_…)."), status: .badRequest)
        }
        let identity: AdminIdentity
        switch await authenticate(token, request, context) {
        case .success(let id):
            identity = id
        case .failure(let error) where error.status == 401:
            return renderLogin(request, flash: .error("That admin token is not valid, or it was revoked."), status: .unauthorized)
        case .failure(let error) where error.status == 429:
            return renderLogin(request, flash: .error(error.message), status: .tooManyRequests)
        case .failure(let error):
            throw error
        }
        let sessionId: String
        do {
            sessionId = try await db(context) {
                try await sessions.create(tenantId: identity.tenantId, adminTokenId: identity.tokenId, logger: context.logger)
            }
        } catch let error as KeybrakeError where error.code == "tenant_limit_reached" {
            return renderLogin(request, flash: .error(error.message), status: .unprocessableContent)
        }
        var response = Page.redirect("/dashboard")
        response.setCookie(Self.cookie(Self.sessionCookie, sessionId, path: "/dashboard", maxAge: Int(sessions.lifetime.components.seconds), request: request))
        response.setCookie(Self.cookie(Self.loginCookie, "", path: "/dashboard/login", maxAge: 0, request: request))
        return response
    }

    /// The admin token check as a value (a typed-throws `do/catch` here crashes the Swift 6.3 SIL optimizer).
    func authenticate(_ token: String, _ request: Request, _ context: KeybrakeRequestContext) async -> Result<AdminIdentity, KeybrakeError> {
        do {
            return .success(try await authenticator.authenticate(token: token, request: request, context: context))
        } catch {
            return .failure(error)
        }
    }

    func logout(_ request: Request, _ context: KeybrakeRequestContext) async throws -> Response {
        let (_, _) = try await verifiedForm(request, context)
        if let cookie = request.cookies[Self.sessionCookie]?.value {
            try await db(context) { try await sessions.delete(cookie: cookie, logger: context.logger) }
        }
        var response = Page.redirect("/dashboard/login?notice=signed_out")
        response.setCookie(Self.cookie(Self.sessionCookie, "", path: "/dashboard", maxAge: 0, request: request))
        return response
    }
}
