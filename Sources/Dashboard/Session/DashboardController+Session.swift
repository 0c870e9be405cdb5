import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore

extension DashboardController {
    /// True when the browser reached us over TLS: directly, or through a proxy that says so.
    static func isSecure(_ request: Request) -> Bool {
        if request.head.scheme?.lowercased() == "https" { return true }
        if let proto = request.headers[.xForwardedProto]?.split(separator: ",").first,
           proto.trimmingCharacters(in: .whitespaces).lowercased() == "https" { return true }
        if let forwarded = request.headers[.forwarded]?.lowercased().split(separator: ",").first,
           forwarded.split(separator: ";").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "proto=https" }) { return true }
        return false
    }

    static func cookie(_ name: String, _ value: String, path: String, maxAge: Int, request: Request) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: path, secure: isSecure(request), httpOnly: true, sameSite: .strict)
    }

    /// The signed-in session, or a redirect to the sign-in page.
    func session(_ request: Request, _ context: KeybrakeRequestContext) async throws -> DashboardSession {
        guard let cookie = request.cookies[Self.sessionCookie]?.value,
              let session = try await db(context, { try await sessions.session(cookie: cookie, logger: context.logger) }) else {
            throw SignInRequired()
        }
        return session
    }


    /// A state-changing form: signed in, and carrying this session's CSRF token.
    func verifiedForm(_ request: Request, _ context: KeybrakeRequestContext) async throws -> (DashboardSession, FormBody) {
        let session = try await session(request, context)
        let form = try await FormBody.read(request, context: context)
        guard let token = form["csrf"], constantTimeEquals(token, session.csrfToken) else { throw Self.csrfError }
        return (session, form)
    }

    static let csrfError = KeybrakeError(
        status: 403, code: .csrfTokenInvalid,
        message: "This form did not come from your current dashboard session. Go back, reload the page and submit it again."
    )
}
