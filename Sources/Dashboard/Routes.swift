import Audit
import Foundation
import HTTPLayer
import Hummingbird
import KeybrakeCore
import Keys
import PostgresNIO
import Storage
import Tenants
import TokenAuth
import Vault
import Webhooks

/// Server-rendered pages under /dashboard: overview (spend per key and label, monthly usage), keys (issue, edit caps,
/// revoke), audit (filters, detail, resolving unknown outcomes), vendor credentials and webhook endpoints.
///
/// Sign-in exchanges an admin token for a session cookie (`kb_session`: HttpOnly, SameSite=Strict, Path=/dashboard,
/// Secure when the request arrived over TLS or with `X-Forwarded-Proto: https` / `Forwarded: proto=https` from the
/// TLS-terminating proxy). The session row is read from Postgres on every request, so sign-out, expiry and revoking
/// the admin token that opened it end it at once on every replica. Every state-changing form carries the session's
/// CSRF token; the sign-in form carries a double-submit token bound to a short-lived cookie.
///
/// Layout: this file is the route table and the dependencies. `Session/` holds the session store, sign-in and
/// sign-out, and the session/CSRF checks; `Pages/<Page>/` one folder per page: `<Page>Page.swift` (its handlers, an
/// extension of this type; the feature modules' own `…Controller`s serve the admin API), `<Page>+Model.swift` (view
/// models) and `<Page>+Template.swift`; `Shared/` what several pages use: the layout and partials (`Templates.swift`:
/// the spend row's cells, the confirm form), view models (`Views.swift`: chrome, flash, bars, meters), paging,
/// rendering, middleware, formatting and HTTP helpers.
public struct DashboardController: Sendable {
    let sessions: SessionStore
    let authenticator: any AdminAuthenticator
    let tenants: any TenantRepository
    let tenantsConfiguration: TenantsConfiguration
    let keys: any KeyRepository
    let verifier: TokenVerifier
    let credentials: CredentialStore
    let audit: AuditRepository
    let spend: SpendRepository
    let keySpend: any KeySpendReader
    let clock: any KeybrakeCore.Clock
    let renderer: Renderer
    /// Key edits and revocations answer once every replica has applied them, as the admin API's do.
    let keyChanges: KeyChangeAcknowledgements?
    /// The admin API's per-tenant limit on key creation: the form hashes a token like `POST /v1/keys` does.
    let keyCreations: TenantActionLimiter
    /// The admin API's per-tenant limit on key changes (caps edits, revocations).
    let keyChangeLimit: TenantActionLimiter
    /// Webhook endpoints (budget alerts).
    let webhooks: DashboardWebhooks

    static let sessionCookie = "kb_session"
    static let loginCookie = "kb_login"
    static let keysPageSize = 50
    static let auditPageSize = 50
    /// Rows of the overview's per-key table; the rest are counted and linked.
    static let overviewMaxRows = 100
    /// Keys offered in the audit filter's key list.
    static let filterMaxKeys = 200

    public init(
        postgres: DatabasePool, authenticator: any AdminAuthenticator, tenants: any TenantRepository,
        tenantsConfiguration: TenantsConfiguration, keys: any KeyRepository, verifier: TokenVerifier,
        credentials: CredentialStore, audit: AuditRepository, spend: SpendRepository, keySpend: any KeySpendReader,
        clock: any KeybrakeCore.Clock, keyChanges: KeyChangeAcknowledgements? = nil, keyCreations: TenantActionLimiter,
        keyChangeLimit: TenantActionLimiter = TenantActionLimiter(perMinutePerTenant: 600, action: "changing vault keys"),
        webhooks: DashboardWebhooks
    ) {
        self.webhooks = webhooks
        self.keyChanges = keyChanges
        self.keyCreations = keyCreations
        self.keyChangeLimit = keyChangeLimit
        self.sessions = SessionStore(client: postgres, maxPerTenant: tenantsConfiguration.maxSessionsPerTenant)
        self.authenticator = authenticator
        self.tenants = tenants
        self.tenantsConfiguration = tenantsConfiguration
        self.keys = keys
        self.verifier = verifier
        self.credentials = credentials
        self.audit = audit
        self.spend = spend
        self.keySpend = keySpend
        self.clock = clock
        // The templates are constants compiled into the binary; a parse error is a programming error.
        self.renderer = Renderer(library: try! Templates.library())
    }

    public func addRoutes(to router: Router<KeybrakeRequestContext>) {
        let group = router.group("/dashboard").add(middleware: DashboardMiddleware(renderer: renderer)).add(middleware: ReadLagMiddleware())
        group.get("") { request, context in try await self.overview(request, context) }
        group.get("/login") { request, context in try await self.loginPage(request, context) }
        group.post("/login") { request, context in try await self.login(request, context) }
        group.post("/logout") { request, context in try await self.logout(request, context) }
        group.get("/keys") { request, context in try await self.keysPage(request, context) }
        group.get("/keys/new") { request, context in try await self.newKeyPage(request, context) }
        group.post("/keys") { request, context in try await self.createKey(request, context) }
        group.get("/keys/:id") { request, context in try await self.keyPage(request, context) }
        group.post("/keys/:id/caps") { request, context in try await self.saveCaps(request, context) }
        group.get("/keys/:id/revoke") { request, context in try await self.revokePage(request, context) }
        group.post("/keys/:id/revoke") { request, context in try await self.revoke(request, context) }
        group.get("/audit") { request, context in try await self.auditPage(request, context) }
        group.get("/audit/:id") { request, context in try await self.auditEventPage(request, context) }
        group.post("/audit/:id/resolve") { request, context in try await self.resolve(request, context) }
        group.get("/vendors") { request, context in try await self.vendorsPage(request, context) }
        group.post("/vendors/:vendor") { request, context in try await self.saveCredentials(request, context) }
        group.get("/vendors/:vendor/delete") { request, context in try await self.deleteCredentialsPage(request, context) }
        group.post("/vendors/:vendor/delete") { request, context in try await self.deleteCredentials(request, context) }
        group.get("/webhooks") { request, context in try await self.webhooksPage(request, context) }
        group.post("/webhooks") { request, context in try await self.createWebhook(request, context) }
        group.get("/webhooks/:id") { request, context in try await self.webhookPage(request, context) }
        group.post("/webhooks/:id/test") { request, context in try await self.testWebhook(request, context) }
        group.post("/webhooks/:id/rotate") { request, context in try await self.rotateWebhook(request, context) }
        group.get("/admin-tokens") { request, context in try await self.adminTokensPage(request, context) }
        group.post("/admin-tokens/revoke-others") { request, context in try await self.revokeOtherAdminTokens(request, context) }
        group.get("/assets/dashboard.css") { _, _ in Self.asset(Assets.css, type: "text/css; charset=utf-8") }
        group.get("/assets/dashboard.js") { _, _ in Self.asset(Assets.js, type: "text/javascript; charset=utf-8") }
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "public, max-age=300"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
