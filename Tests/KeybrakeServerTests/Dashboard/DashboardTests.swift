import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import XCTest

/// A minimal browser over the in-process test client: keeps cookies, posts forms, reads hidden fields.
struct DashboardBrowser {
    let client: any TestClientProtocol
    var cookies: [String: String] = [:]
    /// Sent as X-Forwarded-Proto, as a TLS-terminating proxy would.
    var forwardedProto: String?

    init(_ client: any TestClientProtocol) { self.client = client }

    static func encode(_ form: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
    }

    @discardableResult
    mutating func request(_ method: HTTPRequest.Method, _ uri: String, form: [(String, String)]? = nil) async throws -> HTTPResult {
        var headers: HTTPFields = [:]
        if !cookies.isEmpty { headers[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "; ") }
        if let forwardedProto { headers[HTTPField.Name("X-Forwarded-Proto")!] = forwardedProto }
        var body: ByteBuffer?
        if let form {
            headers[.contentType] = "application/x-www-form-urlencoded"
            body = ByteBuffer(string: Self.encode(form))
        }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: body)
        for header in response.headers[values: .setCookie] {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0]), value = pair.count > 1 ? String(pair[1]) : ""
            if value.isEmpty || header.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = value }
        }
        return HTTPResult(status: response.status, headers: response.headers, body: Data(buffer: response.body))
    }

    @discardableResult
    mutating func get(_ uri: String) async throws -> HTTPResult { try await request(.get, uri) }

    @discardableResult
    mutating func post(_ uri: String, _ form: [(String, String)]) async throws -> HTTPResult { try await request(.post, uri, form: form) }

    /// The value of a hidden field (`name="…" value="…"`) in a page.
    static func field(_ html: String, _ name: String) -> String? {
        guard let range = html.range(of: "name=\"\(name)\" value=\"") else { return nil }
        let rest = html[range.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }

    /// Signs in through the form, like a person: load the page (login cookie + token), post the admin token.
    @discardableResult
    mutating func signIn(_ token: String) async throws -> HTTPResult {
        let page = try await get("/dashboard/login")
        XCTAssertEqual(page.status, .ok, page.text)
        let loginCsrf = Self.field(page.text, "login_csrf") ?? ""
        return try await post("/dashboard/login", [("login_csrf", loginCsrf), ("token", token)])
    }

    /// The session's CSRF token, read from a page's sign-out form.
    mutating func csrf() async throws -> String {
        let page = try await get("/dashboard/keys")
        XCTAssertEqual(page.status, .ok, page.text)
        return Self.field(page.text, "csrf") ?? ""
    }
}

extension HTTPResult {
    var location: String? { headers[.location] }

    /// `total;dur=…` of `Server-Timing`, in milliseconds.
    var serverTotalMs: Double? {
        guard let timing = headers[HTTPField.Name("Server-Timing")!],
              let part = timing.split(separator: ",").first(where: { $0.contains("total;dur=") }) else { return nil }
        return Double(part.split(separator: "=").last ?? "")
    }
}

final class DashboardTests: XCTestCase {
    func testSignInWithValidAndInvalidTokenAndCookieFlags() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup(name: "Dash Co")
            var browser = DashboardBrowser(client)

            // Not signed in: every page sends the browser to the sign-in form.
            let redirected = try await browser.get("/dashboard")
            XCTAssertEqual(redirected.status, .seeOther)
            XCTAssertEqual(redirected.location, "/dashboard/login")
            let r1 = try await browser.get("/dashboard/audit")
            XCTAssertEqual(r1.location, "/dashboard/login")
            let slash = try await browser.get("/dashboard/")
            XCTAssertEqual(slash.location, "/dashboard/login")

            let bad = try await browser.signIn("kb_admin_AAAAAAAAAAAAAAAA_" + String(repeating: "x", count: 43))
            XCTAssertEqual(bad.status, .unauthorized)
            XCTAssertTrue(bad.text.contains("not valid"), bad.text)
            XCTAssertNil(browser.cookies["kb_session"])
            let r2 = try await browser.signIn("not-a-token")
            XCTAssertEqual(r2.status, .unauthorized)

            let good = try await browser.signIn(admin)
            XCTAssertEqual(good.status, .seeOther, good.text)
            XCTAssertEqual(good.location, "/dashboard")
            let setCookie = good.headers[values: .setCookie].first { $0.hasPrefix("kb_session=") } ?? ""
            XCTAssertTrue(setCookie.contains("HttpOnly"), setCookie)
            XCTAssertTrue(setCookie.contains("SameSite=Strict"), setCookie)
            XCTAssertTrue(setCookie.contains("Path=/dashboard"), setCookie)
            XCTAssertFalse(setCookie.contains("Secure"), "plain HTTP without a proxy saying otherwise: no Secure flag")
            XCTAssertFalse(setCookie.contains(admin), "the cookie is a session id, never the admin token")

            let overview = try await browser.get("/dashboard")
            XCTAssertEqual(overview.status, .ok, overview.text)
            XCTAssertTrue(overview.text.contains("Dash Co"))
            XCTAssertEqual(overview.headers[.cacheControl], "no-store")
            XCTAssertTrue(overview.headers[.contentSecurityPolicy]?.contains("script-src 'self'") ?? false)
            XCTAssertNotNil(overview.serverTotalMs)

            // Only the session id's hash is stored.
            let cookie = browser.cookies["kb_session"] ?? ""
            let stored = try await TestDatabase.withClient { db in
                var rows: [String] = []
                for try await h in try await db.query("SELECT encode(id_hash, 'hex') FROM dashboard_sessions").decode(String.self) { rows.append(h) }
                return rows
            }
            XCTAssertFalse(stored.contains(cookie))
            XCTAssertFalse(stored.contains { $0.contains(cookie) })
        }
    }

    func testSecureCookieBehindATLSProxyAndLoginFormNeedsItsCookie() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            browser.forwardedProto = "https"
            let signedIn = try await browser.signIn(admin)
            XCTAssertEqual(signedIn.status, .seeOther, signedIn.text)
            let setCookie = signedIn.headers[values: .setCookie].first { $0.hasPrefix("kb_session=") } ?? ""
            XCTAssertTrue(setCookie.contains("Secure"), setCookie)

            // A login form posted from elsewhere (no login cookie to match its token) is refused: no login CSRF.
            var other = DashboardBrowser(client)
            let forged = try await other.post("/dashboard/login", [("login_csrf", "forged"), ("token", admin)])
            XCTAssertEqual(forged.status, .forbidden, forged.text)
            XCTAssertNil(other.cookies["kb_session"])
        }
    }

    func testFormsWithoutTheSessionCSRFTokenAreRefused() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            let (keyId, _) = try await client.createKey(admin: admin)
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let form = [("vendor", "stripe"), ("label", "csrf-test"), ("allowed_endpoints", "POST /v1/charges")]
            let missing = try await browser.post("/dashboard/keys", form)
            XCTAssertEqual(missing.status, .forbidden, missing.text)
            XCTAssertEqual(missing.headers[.contentType], "text/html; charset=utf-8")
            let wrong = try await browser.post("/dashboard/keys/\(keyId)/revoke", [("csrf", "not-the-token")])
            XCTAssertEqual(wrong.status, .forbidden)
            let keys = try await client.call(.get, "/v1/keys", token: admin)
            let list = keys.json["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(list.count, 1, "no key was created")
            XCTAssertEqual(list.first?["status"] as? String, "active", "the key was not revoked")

            // With the token, the same form works and shows the new token once.
            let csrf = try await browser.csrf()
            let created = try await browser.post("/dashboard/keys", [("csrf", csrf)] + form + [("daily_usd_cap", "25"), ("auto_idempotency", "1")])
            XCTAssertEqual(created.status, .created, created.text)
            XCTAssertTrue(created.text.contains("kb_vault_"))
            XCTAssertEqual(created.headers[.cacheControl], "no-store")
        }
    }

    func testUserTextIsEscapedOnEveryPage() async throws {
        try await TestApp.run { client in
            let (tenantId, admin) = try await client.signup(name: "<b>Evil & Co</b>")
            let label = "<script>alert(1)</script>"
            let (keyId, _) = try await client.createKey(admin: admin, ["label": label])
            try await TestDatabase.withClient { db in
                _ = try await db.query("""
                    INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, decision, error_code, run_id, idempotency_key)
                    VALUES ('aud_escape1', \(tenantId), \(keyId), \(label), 'stripe', 'POST', '/v1/<img src=x onerror=alert(2)>', 'denied',
                            'endpoint_not_allowed', '"><script>alert(3)</script>', '<i>idem</i>')
                    """)
            }
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            for page in ["/dashboard", "/dashboard/keys", "/dashboard/keys/\(keyId)", "/dashboard/keys/\(keyId)/revoke",
                         "/dashboard/audit", "/dashboard/audit?key_id=\(keyId)", "/dashboard/audit/aud_escape1"] {
                let r = try await browser.get(page)
                XCTAssertEqual(r.status, .ok, "\(page): \(r.text)")
                XCTAssertFalse(r.text.contains("<script>alert"), "\(page) renders a raw <script> from user data")
                XCTAssertFalse(r.text.contains("<img src=x"), page)
                XCTAssertFalse(r.text.contains("<b>Evil"), page)
                XCTAssertTrue(r.text.contains("&lt;b&gt;Evil &amp; Co&lt;/b&gt;"), page)
            }
            let key = try await browser.get("/dashboard/keys/\(keyId)")
            XCTAssertTrue(key.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the label shows as text")
            let event = try await browser.get("/dashboard/audit/aud_escape1")
            XCTAssertTrue(event.text.contains("&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"), event.text)
            // A key id from the URL that needs escaping comes back escaped (and simply is not found).
            let weird = try await browser.get("/dashboard/audit?key_id=%22%3E%3Cscript%3Ealert(4)%3C%2Fscript%3E")
            XCTAssertEqual(weird.status, .ok)
            XCTAssertFalse(weird.text.contains("<script>alert(4)"))
        }
    }

    func testRevokeThroughTheFormMakesTheNextProxiedCall401() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run { client in
            let tenant = try await client.tenantWithCredentials()
            let (keyId, token) = try await client.vaultKey(tenant, ["daily_usd_cap": 100])
            let ok = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "1234"), ("currency", "usd"), ("source", "tok_visa")])
            XCTAssertEqual(ok.status, .ok, ok.text)

            var browser = DashboardBrowser(client)
            try await browser.signIn(tenant.admin)
            // The call shows up in the audit list and in the spend bars.
            let audit = try await browser.get("/dashboard/audit")
            XCTAssertTrue(audit.text.contains("POST /v1/charges"), audit.text)
            XCTAssertTrue(audit.text.contains("$12.34"))
            let overview = try await browser.get("/dashboard")
            XCTAssertTrue(overview.text.contains("data-key-id=\"\(keyId)\""))
            XCTAssertTrue(overview.text.contains("$12.34 of $100.00 cap"), overview.text)

            let confirm = try await browser.get("/dashboard/keys/\(keyId)/revoke")
            XCTAssertEqual(confirm.status, .ok)
            let csrf = DashboardBrowser.field(confirm.text, "csrf") ?? ""
            let revoked = try await browser.post("/dashboard/keys/\(keyId)/revoke", [("csrf", csrf)])
            XCTAssertEqual(revoked.status, .seeOther, revoked.text)
            XCTAssertEqual(revoked.location, "/dashboard/keys/\(keyId)?notice=revoked")
            let page = try await browser.get(revoked.location ?? "")
            XCTAssertTrue(page.text.contains("Key revoked."))
            XCTAssertTrue(page.text.contains(">revoked</span>"))

            let denied = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "100"), ("currency", "usd"), ("description", "after revoke")])
            XCTAssertEqual(denied.status, .unauthorized, denied.text)
            XCTAssertEqual(denied.headers[.keybrakeErrorCode], "vault_key_revoked")
        }
    }

    /// A key's page lists its runs (child keys) with their spend against their caps, and revokes one from there;
    /// the parent goes on.
    func testAKeysPageListsItsRunsAndRevokesOne() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run { client in
            let tenant = try await client.tenantWithCredentials()
            let (parentId, parent) = try await client.vaultKey(tenant, ["daily_usd_cap": 100])
            let run = try await client.call(.post, "/v1/child-keys", token: parent, json: ["label": "nightly <run>", "run_id": "run-77", "total_usd_cap": 20])
            let runId = (run.json["key"] as? [String: Any])?["id"] as? String ?? ""
            let runToken = run.json["token"] as? String ?? ""
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: runToken, form: [("amount", "500"), ("currency", "usd")]), .ok)

            var browser = DashboardBrowser(client)
            try await browser.signIn(tenant.admin)
            let page = try await browser.get("/dashboard/keys/\(parentId)")
            XCTAssertTrue(page.text.contains("id=\"key-runs\""), page.text)
            XCTAssertTrue(page.text.contains("data-key=\"\(runId)\""))
            XCTAssertTrue(page.text.contains("nightly &lt;run&gt;"), "labels are escaped")
            XCTAssertTrue(page.text.contains("run-77"))
            XCTAssertTrue(page.text.contains("$5.00"), "the run's spend")
            XCTAssertTrue(page.text.contains("$20.00"), "against its cap")
            XCTAssertTrue(page.text.contains("/dashboard/keys/\(runId)/revoke"))
            let runPage = try await browser.get("/dashboard/keys/\(runId)")
            XCTAssertTrue(runPage.text.contains("id=\"key-parent\""))

            let confirm = try await browser.get("/dashboard/keys/\(runId)/revoke")
            let csrf = DashboardBrowser.field(confirm.text, "csrf") ?? ""
            let revoked = try await browser.post("/dashboard/keys/\(runId)/revoke", [("csrf", csrf)])
            XCTAssertEqual(revoked.status, .seeOther, revoked.text)
            let denied = try await client.proxy(.post, "/stripe/v1/charges", key: runToken, form: [("amount", "100"), ("currency", "usd"), ("description", "after")])
            XCTAssertEqual(denied.headers[.keybrakeErrorCode], "vault_key_revoked")
            expectStatus(try await client.proxy(.post, "/stripe/v1/charges", key: parent, form: [("amount", "100"), ("currency", "usd"), ("description", "parent")]), .ok)
            let after = try await browser.get("/dashboard/keys/\(parentId)")
            XCTAssertTrue(after.text.contains(">revoked</span>"), "the run shows as revoked on its parent's page")
        }
    }

    func testSignOutAndRevokingTheAdminTokenEndTheSession() async throws {
        try await TestApp.run { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let cookie = browser.cookies["kb_session"] ?? ""
            let csrf = try await browser.csrf()
            let out = try await browser.post("/dashboard/logout", [("csrf", csrf)])
            XCTAssertEqual(out.status, .seeOther)
            XCTAssertEqual(out.location, "/dashboard/login?notice=signed_out")
            XCTAssertNil(browser.cookies["kb_session"], "the cookie is cleared")
            // Even a browser that kept the old cookie is signed out: the row is gone.
            browser.cookies["kb_session"] = cookie
            let r3 = try await browser.get("/dashboard")
            XCTAssertEqual(r3.location, "/dashboard/login")

            // A session opened with a second admin token ends when that token is revoked.
            let second = try await client.call(.post, "/v1/admin-tokens", token: admin, json: ["label": "dashboard"])
            let secondToken = second.json["token"] as? String ?? ""
            let secondId = (second.json["admin_token"] as? [String: Any])?["id"] as? String ?? ""
            var other = DashboardBrowser(client)
            let r4 = try await other.signIn(secondToken)
            XCTAssertEqual(r4.status, .seeOther)
            let r5 = try await other.get("/dashboard")
            XCTAssertEqual(r5.status, .ok)
            expectStatus(try await client.call(.delete, "/v1/admin-tokens/\(secondId)", token: admin), .noContent)
            let r6 = try await other.get("/dashboard")
            XCTAssertEqual(r6.location, "/dashboard/login")
        }
    }

    func testIssueEditCapsCredentialsAndResolveThroughForms() async throws {
        let harness = try await ProxyHarness.start()
        defer { harness.fake.stop() }
        try await harness.run { client in
            let (_, admin) = try await client.signup()
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            var csrf = try await browser.csrf()

            // Vendor credentials: set, shown only as a fingerprint.
            let secret = "sk_test_DashboardSecretValue9876"
            let saved = try await browser.post("/dashboard/vendors/stripe", [("csrf", csrf), ("secret_key", secret)])
            XCTAssertEqual(saved.status, .seeOther, saved.text)
            let vendors = try await browser.get("/dashboard/vendors")
            XCTAssertTrue(vendors.text.contains("…9876"))
            XCTAssertFalse(vendors.text.contains(secret))
            let badSecret = try await browser.post("/dashboard/vendors/stripe", [("csrf", csrf), ("secret_key", "pk_live_nope_but_secretish")])
            XCTAssertEqual(badSecret.status, .badRequest)
            XCTAssertFalse(badSecret.text.contains("pk_live_nope_but_secretish"), "a refused secret is not echoed back")

            // Issue a key through the form; a refused form keeps what was typed.
            let refused = try await browser.post("/dashboard/keys", [("csrf", csrf), ("vendor", "stripe"), ("label", "form-agent"),
                                                                     ("allowed_endpoints", "POST /v1/charges"), ("daily_usd_cap", "12.345")])
            XCTAssertEqual(refused.status, .badRequest)
            XCTAssertTrue(refused.text.contains("daily_usd_cap"), refused.text)
            XCTAssertTrue(refused.text.contains("value=\"form-agent\""))
            let created = try await browser.post("/dashboard/keys", [
                ("csrf", csrf), ("vendor", "stripe"), ("label", "form-agent"), ("allowed_endpoints", "POST /v1/charges\r\nGET /v1/charges/*"),
                ("daily_usd_cap", "50"), ("monthly_usd_cap", "500"), ("max_request_usd", "40"), ("timezone", "UTC"),
                ("duplicate_window_seconds", "0"), ("auto_idempotency", "1"), ("expires_at", "2099-01-01T00:00"),
            ])
            XCTAssertEqual(created.status, .created, created.text)
            let token = DashboardBrowser.field(created.text.replacingOccurrences(of: "readonly value", with: "name=\"token\" value"), "token") ?? ""
            XCTAssertTrue(token.hasPrefix("kb_vault_"), created.text)
            let keyId = created.text.components(separatedBy: "/dashboard/keys/").dropFirst().first?.prefix { $0 != "\"" }.description ?? ""
            let key = try await client.call(.get, "/v1/keys/\(keyId)", token: admin)
            XCTAssertEqual(key.status, .ok, key.text)
            let k = key.json["key"] as? [String: Any] ?? [:]
            XCTAssertEqual(k["allowed_endpoints"] as? [String], ["POST /v1/charges", "GET /v1/charges/*"])
            XCTAssertEqual(k["expires_at"] as? String, "2099-01-01T00:00:00Z")
            XCTAssertEqual(k["duplicate_window_seconds"] as? Int, 0)

            // Edit caps: a bad value is refused with the field named; an empty field removes that cap.
            let badCaps = try await browser.post("/dashboard/keys/\(keyId)/caps", [("csrf", csrf), ("daily_usd_cap", "900"), ("monthly_usd_cap", "500")])
            XCTAssertEqual(badCaps.status, .badRequest)
            XCTAssertTrue(badCaps.text.contains("cannot exceed"), badCaps.text)
            let caps = try await browser.post("/dashboard/keys/\(keyId)/caps", [("csrf", csrf), ("daily_usd_cap", "20"), ("monthly_usd_cap", ""), ("max_request_usd", "5")])
            XCTAssertEqual(caps.status, .seeOther, caps.text)
            let edited = (try await client.call(.get, "/v1/keys/\(keyId)", token: admin)).json["key"] as? [String: Any] ?? [:]
            XCTAssertEqual((edited["daily_usd_cap"] as? NSNumber)?.doubleValue, 20)
            XCTAssertTrue(edited["monthly_usd_cap"] is NSNull)
            let tooBig = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "600"), ("currency", "usd")])
            XCTAssertEqual(tooBig.headers[.keybrakeErrorCode], "request_cap_exceeded", "the new per-request cap applies at once")

            // An unknown outcome (upstream 500) is resolved from its detail page.
            harness.fake.setFault(.status(500))
            let failed = try await client.proxy(.post, "/stripe/v1/charges", key: token, form: [("amount", "300"), ("currency", "usd")])
            harness.fake.setFault(.none)
            XCTAssertGreaterThanOrEqual(failed.status.code, 500, failed.text)
            // The filters that need a window in the API (the expected values: in no index) read the last 31 days here.
            for expected in ["outcome=settled", "decision=allowed"] {
                let page = try await browser.get("/dashboard/audit?\(expected)")
                XCTAssertEqual(page.status, .ok, "\(expected): \(page.text)")
            }
            let allowed = try await browser.get("/dashboard/audit?decision=allowed")
            XCTAssertTrue(allowed.text.contains("data-audit-id=\"aud_"), allowed.text)
            let unknown = try await browser.get("/dashboard/audit?outcome=outcome_unknown")
            let auditId = unknown.text.components(separatedBy: "data-audit-id=\"").dropFirst().first?.prefix { $0 != "\"" }.description ?? ""
            XCTAssertTrue(auditId.hasPrefix("aud_"), unknown.text)
            let detail = try await browser.get("/dashboard/audit/\(auditId)")
            XCTAssertTrue(detail.text.contains("id=\"resolve-form\""), detail.text)
            XCTAssertTrue(detail.text.contains("$3.00"))
            csrf = DashboardBrowser.field(detail.text, "csrf") ?? ""
            let resolved = try await browser.post("/dashboard/audit/\(auditId)/resolve", [("csrf", csrf), ("outcome", "released"), ("amount_usd", "3.00")])
            XCTAssertEqual(resolved.status, .seeOther, resolved.text)
            let after = try await browser.get(resolved.location ?? "")
            XCTAssertFalse(after.text.contains("id=\"resolve-form\""))
            XCTAssertTrue(after.text.contains("Resolved by"))
            let r7 = try await Ledger.day(keyId)
            XCTAssertEqual(r7.unknown, 0)

            // Delete credentials after a confirm page.
            let confirm = try await browser.get("/dashboard/vendors/stripe/delete")
            XCTAssertTrue(confirm.text.contains("…9876"))
            let deleted = try await browser.post("/dashboard/vendors/stripe/delete", [("csrf", csrf)])
            XCTAssertEqual(deleted.status, .seeOther)
            let r8 = try await browser.get("/dashboard/vendors")
            XCTAssertTrue(r8.text.contains("Not set"))
            expectStatus(try await client.call(.get, "/v1/vendors/stripe/credentials", token: admin), .notFound)
        }
    }

    /// Pages work on a tenant with 10,000 audit rows and report their own time in `Server-Timing` (the 50 ms target
    /// itself is checked by `make bench`).
    func testPagesRenderQuicklyWithTenThousandAuditRows() async throws {
        try await TestApp.run { client in
            let (tenantId, admin) = try await client.signup()
            var keyIds: [String] = []
            for i in 0..<20 { keyIds.append(try await client.createKey(admin: admin, ["label": "agent-\(i % 7)", "daily_usd_cap": 100]).id) }
            let ids = keyIds
            try await TestDatabase.withClient { db in
                _ = try await db.query("""
                    INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, operation, decision, error_code,
                                              upstream_status, amount_micros, idempotency_key, upstream_request_id, outcome, created_at)
                    SELECT 'aud_perf' || lpad(g::text, 6, '0'), \(tenantId), (\(ids))[1 + g % 20], 'agent-' || (g % 7), 'stripe', 'POST',
                           '/v1/charges', 'charges.create', CASE WHEN g % 10 = 0 THEN 'denied' ELSE 'allowed' END,
                           CASE WHEN g % 10 = 0 THEN 'daily_usd_cap_exceeded' END, CASE WHEN g % 10 = 0 THEN NULL ELSE 200 END,
                           CASE WHEN g % 10 = 0 THEN 0 ELSE 1000000 END, 'idem_' || g, 'req_' || g,
                           CASE WHEN g % 10 = 0 THEN NULL ELSE 'settled' END, now() - g * interval '1 second'
                    FROM generate_series(1, 10000) g
                    """)
                // Per key: $85 settled, $1 held, $0.50 outcome unknown today (the ledger's breakdown comes from reservations).
                _ = try await db.query("""
                    INSERT INTO reservations (id, tenant_id, key_id, amount_micros, day, month, state, settled_micros)
                    SELECT 'res_perf_' || s || '_' || k, \(tenantId), k, a, (now() AT TIME ZONE 'UTC')::date,
                           date_trunc('month', now() AT TIME ZONE 'UTC')::date, s, CASE WHEN s = 'settled' THEN a END
                    FROM unnest(\(ids)) k, (VALUES ('settled', 85000000), ('held', 1000000), ('unknown', 500000)) AS v(s, a)
                    """)
                _ = try await db.query("""
                    INSERT INTO spend_counters (key_id, period, period_start, counted_micros)
                    SELECT k, p, CASE p WHEN 'day' THEN (now() AT TIME ZONE 'UTC')::date ELSE date_trunc('month', now() AT TIME ZONE 'UTC')::date END,
                           86500000
                    FROM unnest(\(ids)) k, unnest(ARRAY['day', 'month']) p
                    ON CONFLICT DO NOTHING
                    """)
                _ = try await db.query("ANALYZE audit_events")
            }
            var browser = DashboardBrowser(client)
            try await browser.signIn(admin)
            let pages = ["/dashboard", "/dashboard/keys", "/dashboard/audit", "/dashboard/audit?key_id=\(keyIds[3])",
                         "/dashboard/audit?decision=denied&vendor=stripe", "/dashboard/audit/aud_perf000500", "/dashboard/keys/\(keyIds[0])",
                         "/dashboard/vendors"]
            var report: [String] = []
            for page in pages {
                var times: [Double] = []
                var timing = ""
                for _ in 0..<7 {
                    let r = try await browser.get(page)
                    XCTAssertEqual(r.status, .ok, page)
                    times.append(r.serverTotalMs ?? .infinity)
                    timing = r.headers[HTTPField.Name("Server-Timing")!] ?? ""
                }
                let sorted = times.sorted()
                report.append("\(page): best \(String(format: "%.1f", sorted[0])) ms, median \(String(format: "%.1f", sorted[3])) ms (last: \(timing))")
                // Speed is a benchmark's job: the 50 ms target (issue 7) is measured on the release build by `make bench`
                // ("dashboard pages" in its report). Here, on a debug build sharing the machine, only a gross regression
                // fails: a query per row or a scan that grows with the trail costs far more than this at 10,000 rows.
                XCTAssertLessThan(sorted[0], 250, "\(page) took \(times) ms server-side")
            }
            print("dashboard server-side page times (Server-Timing total, 7 runs each, 10,000 audit rows):\n  " + report.joined(separator: "\n  "))
            // The overview flags every key near its cap (86.5 of 100 spent).
            let overview = try await browser.get("/dashboard")
            XCTAssertTrue(overview.text.contains("20 keys are near or at their daily cap."), overview.text)
            // Paging goes on past the first page.
            let first = try await browser.get("/dashboard/audit")
            let next = first.text.components(separatedBy: "id=\"next-page\"").first?.components(separatedBy: "href=\"").last?.prefix { $0 != "\"" }
            let second = try await browser.get(String(next ?? "").replacingOccurrences(of: "&amp;", with: "&"))
            XCTAssertEqual(second.status, .ok)
            XCTAssertTrue(second.text.contains("aud_perf000051"), "the second page starts after the first 50 rows")
        }
    }
}
