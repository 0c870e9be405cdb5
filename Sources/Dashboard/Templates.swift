import Mustache

/// The dashboard's Mustache templates, compiled into the binary (no template files to deploy).
/// Rule: user data only ever appears in `{{ }}` (HTML-escaped, quotes included, so it is safe in attributes too);
/// these templates never use `{{{ }}}`.
enum Templates {
    static let all: [String: String] = [
        "layout": layout, "bar": bar, "error": error, "login": login, "overview": overview,
        "keys": keys, "key_new": keyNew, "key_created": keyCreated, "key": key, "key_revoke": keyRevoke,
        "audit": audit, "audit_event": auditEvent, "vendors": vendors, "vendor_delete": vendorDelete,
    ]

    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in all { try library.register(text, named: name) }
        return library
    }

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{$title}}Dashboard{{/title}} · Keybrake</title>
        <link rel="stylesheet" href="/dashboard/assets/dashboard.css">
        <script src="/dashboard/assets/dashboard.js" defer></script>
        </head>
        <body>
        <header class="top">
        <a class="brand" href="/dashboard">Keybrake</a>
        {{#chrome}}
        <nav aria-label="Dashboard">
        <a href="/dashboard"{{#navOverview}} aria-current="page"{{/navOverview}}>Overview</a>
        <a href="/dashboard/keys"{{#navKeys}} aria-current="page"{{/navKeys}}>Keys</a>
        <a href="/dashboard/audit"{{#navAudit}} aria-current="page"{{/navAudit}}>Audit</a>
        <a href="/dashboard/vendors"{{#navVendors}} aria-current="page"{{/navVendors}}>Vendor credentials</a>
        </nav>
        <div class="account"><span class="tenant">{{tenantName}}</span>
        <form method="post" action="/dashboard/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="linklike" id="sign-out">Sign out</button></form>
        </div>
        {{/chrome}}
        </header>
        <main>
        {{#flash}}<p class="flash {{kind}}" role="{{role}}" id="flash">{{message}}</p>{{/flash}}
        {{$body}}{{/body}}
        </main>
        </body>
        </html>

        """

    /// A stacked bar: settled, reserved and outcome-unknown spend against the cap (1000 units = the cap).
    static let bar = """
        <svg class="bar{{^bar.capped}} uncapped{{/bar.capped}}" viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" aria-label="{{bar.text}}"><title>{{bar.text}}</title><rect class="track" width="1000" height="14"/><rect class="settled" width="{{bar.settledW}}" height="14"/><rect class="reserved" x="{{bar.reservedX}}" width="{{bar.reservedW}}" height="14"/><rect class="unknown" x="{{bar.unknownX}}" width="{{bar.unknownW}}" height="14"/></svg>
        """

    static let error = """
        {{<layout}}{{$title}}{{heading}}{{/title}}{{$body}}
        <h1>{{heading}}</h1>
        <p class="flash error" role="alert">{{message}}</p>
        <p><a href="/dashboard">Back to the dashboard</a></p>
        {{/body}}{{/layout}}
        """

    static let login = """
        {{<layout}}{{$title}}Sign in{{/title}}{{$body}}
        <section class="narrow">
        <h1>Sign in</h1>
        <p>Paste an admin token (<code>kb_admin_…</code>). It is checked once and exchanged for a session cookie;
        the browser does not keep the token.</p>
        <form method="post" action="/dashboard/login" class="stack" id="sign-in-form">
        <input type="hidden" name="login_csrf" value="{{loginCsrf}}">
        <label for="token">Admin token</label>
        <input type="password" id="token" name="token" autocomplete="off" spellcheck="false" required>
        <button type="submit" id="sign-in">Sign in</button>
        </form>
        <p class="muted">No tenant yet? Sign up with <code>POST /v1/tenants</code>; the response carries your first admin token.</p>
        </section>
        {{/body}}{{/layout}}
        """

    static let overview = """
        {{<layout}}{{$title}}Overview{{/title}}{{$body}}
        <h1>Overview</h1>
        {{#usage}}
        <section class="card" id="usage">
        <h2>Proxied requests in {{month}} <small class="muted">(UTC month, {{plan}} plan)</small></h2>
        <p class="big"><span id="usage-requests">{{requests}}</span>{{#quota}} <span class="muted">of {{quota}} included</span>{{/quota}}{{^quota}} <span class="muted">no monthly quota</span>{{/quota}}</p>
        {{#hasQuota}}<div class="{{rowClass}}">{{>bar}}</div><p class="muted">{{percent}} of the free-tier quota used.{{#nearQuota}} <strong>Near the quota:</strong> past it, proxied requests answer 429 monthly_quota_exceeded until the month ends.{{/nearQuota}}</p>{{/hasQuota}}
        </section>
        {{/usage}}
        <section>
        <h2>Today's spend by key</h2>
        <p class="muted">Each key's day runs in its own time zone (today is {{date}} in UTC). Bars fill up to the daily cap.
        <span class="legend"><i class="sw settled"></i>settled <i class="sw reserved"></i>reserved (in flight) <i class="sw unknown"></i>outcome unknown (counted as spent)</span></p>
        {{#nearKeys}}<p class="flash warn" id="near-cap-summary">{{nearKeys}}</p>{{/nearKeys}}
        <table class="spend" id="spend-by-key">
        <thead><tr><th>Key</th><th>Vendor</th><th class="barcol">Today vs daily cap</th><th class="num">Spent</th><th class="num">Daily cap</th><th class="num">Settled</th><th class="num">Reserved</th><th class="num">Unknown</th></tr></thead>
        <tbody>
        {{#keyRows}}
        <tr class="{{rowClass}}" data-key-id="{{keyId}}">
        <td><a href="{{href}}">{{label}}</a>{{#nearCap}} <span class="badge warn">near cap</span>{{/nearCap}}{{#atCap}} <span class="badge danger">cap reached</span>{{/atCap}}{{#inactive}} <span class="badge">{{status}}</span>{{/inactive}}<br><small class="mono">{{keyId}}</small></td>
        <td>{{vendor}}</td>
        <td class="barcol">{{>bar}}</td>
        <td class="num spent">{{spent}}</td>
        <td class="num">{{capText}}{{#percent}}<br><small class="muted">{{percent}}</small>{{/percent}}</td>
        <td class="num">{{settled}}</td>
        <td class="num">{{reserved}}</td>
        <td class="num">{{unknown}}</td>
        </tr>
        {{/keyRows}}
        </tbody>
        </table>
        {{^keyRows}}<p>No keys yet. <a href="/dashboard/keys/new">Issue one</a>.</p>{{/keyRows}}
        {{#moreKeys}}<p class="muted">{{moreKeys}} <a href="/dashboard/keys">All keys</a></p>{{/moreKeys}}
        </section>
        <section>
        <h2>Today's spend by label</h2>
        <p class="muted">A label's cap is the sum of its keys' daily caps; one uncapped key makes the label uncapped.</p>
        <table class="spend" id="spend-by-label">
        <thead><tr><th>Label</th><th class="num">Keys</th><th class="barcol">Today vs daily cap</th><th class="num">Spent</th><th class="num">Daily cap</th><th class="num">Settled</th><th class="num">Reserved</th><th class="num">Unknown</th></tr></thead>
        <tbody>
        {{#labelRows}}
        <tr class="{{rowClass}}">
        <td>{{label}}{{#nearCap}} <span class="badge warn">near cap</span>{{/nearCap}}{{#atCap}} <span class="badge danger">cap reached</span>{{/atCap}}</td>
        <td class="num">{{keyCount}}</td>
        <td class="barcol">{{>bar}}</td>
        <td class="num spent">{{spent}}</td>
        <td class="num">{{capText}}{{#percent}}<br><small class="muted">{{percent}}</small>{{/percent}}</td>
        <td class="num">{{settled}}</td>
        <td class="num">{{reserved}}</td>
        <td class="num">{{unknown}}</td>
        </tr>
        {{/labelRows}}
        </tbody>
        </table>
        </section>
        {{/body}}{{/layout}}
        """

    static let keys = """
        {{<layout}}{{$title}}Keys{{/title}}{{$body}}
        <h1>Keys</h1>
        <p><a class="button" href="/dashboard/keys/new" id="issue-key">Issue a key</a></p>
        <table id="keys">
        <thead><tr><th>Key</th><th>Status</th><th>Vendor</th><th>Policy</th><th>Expires</th><th>Created</th></tr></thead>
        <tbody>
        {{#keys}}
        <tr data-key-id="{{id}}">
        <td><a href="{{href}}">{{label}}</a><br><small class="mono">{{id}}</small></td>
        <td><span class="status {{status}}">{{status}}</span></td>
        <td>{{vendor}}</td>
        <td>{{policy}}{{#uncapped}} <span class="badge warn">uncapped</span>{{/uncapped}}</td>
        <td>{{expires}}</td>
        <td>{{created}}</td>
        </tr>
        {{/keys}}
        </tbody>
        </table>
        {{^keys}}<p>No keys yet.</p>{{/keys}}
        <p class="pager">{{#firstHref}}<a href="{{firstHref}}">« Newest</a> {{/firstHref}}{{#nextHref}}<a href="{{nextHref}}" id="next-page">Older keys »</a>{{/nextHref}}</p>
        {{/body}}{{/layout}}
        """

    static let keyNew = """
        {{<layout}}{{$title}}Issue a key{{/title}}{{$body}}
        <h1>Issue a key</h1>
        {{#form}}
        <form method="post" action="/dashboard/keys" class="stack" id="new-key">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <label for="vendor">Vendor</label>
        <select id="vendor" name="vendor">{{#vendors}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/vendors}}</select>
        <label for="label">Label <small class="muted">(who uses it, e.g. billing-agent; keys with one label are summed on the overview)</small></label>
        <input id="label" name="label" value="{{label}}" maxlength="100" required>
        <label for="allowed_endpoints">Allowed endpoints <small class="muted">one per line: <code>POST /v1/charges</code>, <code>GET /v1/charges/*</code>, or an operation such as <code>charges.create</code></small></label>
        <textarea id="allowed_endpoints" name="allowed_endpoints" rows="4" required>{{endpoints}}</textarea>
        <fieldset><legend>Caps in USD (empty = no limit)</legend>
        <div class="row">
        <label>Daily <input name="daily_usd_cap" inputmode="decimal" value="{{daily}}" size="10"></label>
        <label>Monthly <input name="monthly_usd_cap" inputmode="decimal" value="{{monthly}}" size="10"></label>
        <label>Per request <input name="max_request_usd" inputmode="decimal" value="{{maxRequest}}" size="10"></label>
        </div>
        </fieldset>
        <fieldset><legend>Limits and behaviour</legend>
        <div class="row">
        <label>Expires (UTC) <input type="datetime-local" name="expires_at" value="{{expires}}"></label>
        <label>Requests per minute <input name="rate_limit_per_minute" inputmode="numeric" value="{{rate}}" size="8"></label>
        <label>Time zone of the caps' day <input name="timezone" value="{{timezone}}" size="18"></label>
        <label>Duplicate window, seconds (0 = off) <input name="duplicate_window_seconds" inputmode="numeric" value="{{window}}" size="8"></label>
        </div>
        <label class="check"><input type="checkbox" name="auto_idempotency" value="1"{{#autoIdempotency}} checked{{/autoIdempotency}}> Give POSTs without an Idempotency-Key one derived from the request</label>
        <label for="allowed_stripe_accounts">Allowed Stripe-Account values <small class="muted">(Stripe only; acct_… ids separated by spaces or commas)</small></label>
        <input id="allowed_stripe_accounts" name="allowed_stripe_accounts" value="{{accounts}}">
        </fieldset>
        <p><button type="submit" id="create-key">Issue key</button> <a href="/dashboard/keys">Cancel</a></p>
        </form>
        {{/form}}
        {{/body}}{{/layout}}
        """

    static let keyCreated = """
        {{<layout}}{{$title}}Key issued{{/title}}{{$body}}
        <h1>Key issued: {{label}}</h1>
        <p class="flash warn">Copy the token now. It is shown only this once; Keybrake keeps only a hash of it.</p>
        <div class="token">
        <input id="new-token" class="mono" readonly value="{{token}}" aria-label="Vault key token">
        <button type="button" data-copy="new-token" id="copy-token" hidden>Copy</button>
        </div>
        <p>Give it to the agent in place of the real {{vendor}} secret, and point the SDK at this server, for example
        <code>StripeClient("kb_vault_…", base_addresses={"api": "https://&lt;keybrake&gt;/stripe"})</code>.</p>
        <p><a href="{{href}}" id="key-link">Open the key ({{id}})</a> · <a href="/dashboard/keys">All keys</a></p>
        {{/body}}{{/layout}}
        """

    static let key = """
        {{<layout}}{{$title}}Key {{key.label}}{{/title}}{{$body}}
        {{#key}}
        <h1>{{label}} <span class="status {{status}}" id="key-status">{{status}}</span></h1>
        <p class="mono">{{id}}</p>
        <dl class="facts">
        <dt>Vendor</dt><dd>{{vendor}}</dd>
        <dt>Allowed endpoints</dt><dd>{{#endpoints}}<code>{{.}}</code> {{/endpoints}}</dd>
        <dt>Caps</dt><dd>{{caps}}{{#uncapped}} <span class="badge warn">uncapped</span>{{/uncapped}}</dd>
        <dt>Expires</dt><dd>{{expires}}</dd>
        <dt>Rate limit</dt><dd>{{rate}}</dd>
        <dt>Time zone</dt><dd>{{timezone}}</dd>
        <dt>Idempotency</dt><dd>{{idempotency}}</dd>
        <dt>Stripe accounts</dt><dd>{{accounts}}</dd>
        <dt>Created</dt><dd>{{created}}</dd>
        {{#revokedAt}}<dt>Revoked</dt><dd>{{revokedAt}}</dd>{{/revokedAt}}
        </dl>
        {{/key}}
        <h2>Spend</h2>
        <table class="spend" id="key-spend">
        <thead><tr><th>Period</th><th class="barcol">Spend vs cap</th><th class="num">Spent</th><th class="num">Cap</th><th class="num">Settled</th><th class="num">Reserved</th><th class="num">Unknown</th></tr></thead>
        <tbody>
        {{#periods}}
        <tr class="{{rowClass}}">
        <td>{{name}} <small class="muted">from {{start}}</small></td>
        <td class="barcol">{{>bar}}</td>
        <td class="num spent">{{spent}}</td>
        <td class="num">{{capText}}{{#percent}}<br><small class="muted">{{percent}}</small>{{/percent}}</td>
        <td class="num">{{settled}}</td>
        <td class="num">{{reserved}}</td>
        <td class="num">{{unknown}}</td>
        </tr>
        {{/periods}}
        </tbody>
        </table>
        <p><a href="{{auditHref}}" id="key-audit">Recent calls with this key</a></p>
        {{#caps}}
        <h2>Edit caps</h2>
        <form method="post" action="{{action}}" class="stack" id="edit-caps">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <p class="muted">USD; leave a field empty for no limit. Changes apply from the next proxied request.</p>
        <div class="row">
        <label>Daily <input name="daily_usd_cap" inputmode="decimal" value="{{daily}}" size="10"></label>
        <label>Monthly <input name="monthly_usd_cap" inputmode="decimal" value="{{monthly}}" size="10"></label>
        <label>Per request <input name="max_request_usd" inputmode="decimal" value="{{maxRequest}}" size="10"></label>
        </div>
        <p><button type="submit" id="save-caps">Save caps</button></p>
        </form>
        <h2>Revoke</h2>
        <p>A revoked key is refused on its next proxied request, on every server. It cannot be re-activated.</p>
        <p><a class="button danger" href="{{revokeHref}}" id="revoke-key">Revoke this key…</a></p>
        {{/caps}}
        {{/body}}{{/layout}}
        """

    static let keyRevoke = """
        {{<layout}}{{$title}}Revoke {{label}}{{/title}}{{$body}}
        <h1>Revoke {{label}}?</h1>
        <p>Key <span class="mono">{{id}}</span> ({{vendor}}). Agents using it get <code>401 vault_key_revoked</code> from their next request on.
        This cannot be undone: to restore access, issue a new key.</p>
        <form method="post" action="{{action}}" class="inline-actions">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <button type="submit" class="danger" id="confirm-revoke">Revoke key</button>
        <a href="{{cancelHref}}">Cancel</a>
        </form>
        {{/body}}{{/layout}}
        """

    static let audit = """
        {{<layout}}{{$title}}Audit{{/title}}{{$body}}
        <h1>Audit</h1>
        {{#filters}}
        <form method="get" action="/dashboard/audit" class="filters" id="audit-filters">
        <label>Key <select name="key_id">{{#keyOptions}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{text}}</option>{{/keyOptions}}</select></label>
        <label>Vendor <select name="vendor">{{#vendorOptions}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{text}}</option>{{/vendorOptions}}</select></label>
        <label>Decision <select name="decision">{{#decisionOptions}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{text}}</option>{{/decisionOptions}}</select></label>
        <label>Outcome <select name="outcome">{{#outcomeOptions}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{text}}</option>{{/outcomeOptions}}</select></label>
        <button type="submit">Filter</button> <a href="/dashboard/audit">Clear</a>
        </form>
        {{/filters}}
        <table id="audit">
        <thead><tr><th>Time (UTC)</th><th>Key</th><th>Request</th><th>Decision</th><th class="num">Upstream</th><th class="num">Amount</th><th>Outcome</th></tr></thead>
        <tbody>
        {{#events}}
        <tr class="{{rowClass}}" data-audit-id="{{id}}">
        <td><a href="{{href}}">{{time}}</a></td>
        <td>{{keyLabel}}<br><small class="mono">{{keyId}}</small></td>
        <td><span class="vendor">{{vendor}}</span> <code>{{method}} {{path}}</code>{{#operation}}<br><small class="muted">{{operation}}</small>{{/operation}}</td>
        <td><span class="decision {{decision}}">{{decision}}</span>{{#errorCode}}<br><small>{{errorCode}}</small>{{/errorCode}}</td>
        <td class="num">{{upstreamStatus}}</td>
        <td class="num">{{amount}}</td>
        <td>{{#outcome}}<span class="outcome {{outcome}}">{{outcome}}</span>{{/outcome}}</td>
        </tr>
        {{/events}}
        </tbody>
        </table>
        {{^events}}<p>No calls match.</p>{{/events}}
        <p class="pager">{{#firstHref}}<a href="{{firstHref}}">« Newest</a> {{/firstHref}}{{#nextHref}}<a href="{{nextHref}}" id="next-page">Older calls »</a>{{/nextHref}}</p>
        {{/body}}{{/layout}}
        """

    static let auditEvent = """
        {{<layout}}{{$title}}Call {{event.id}}{{/title}}{{$body}}
        {{#event}}
        <h1>Call <span class="mono">{{id}}</span></h1>
        <dl class="facts" id="audit-detail">
        <dt>Time</dt><dd>{{time}}</dd>
        <dt>Key</dt><dd>{{#keyHref}}<a href="{{keyHref}}">{{keyLabel}}</a> <small class="mono">{{keyId}}</small>{{/keyHref}}{{^keyHref}}—{{/keyHref}}</dd>
        <dt>Request</dt><dd><span class="vendor">{{vendor}}</span> <code>{{method}} {{path}}</code> {{#operation}}({{operation}}){{/operation}}</dd>
        <dt>Decision</dt><dd><span class="decision {{decision}}">{{decision}}</span> {{#errorCode}}<code>{{errorCode}}</code>{{/errorCode}}</dd>
        <dt>Upstream status</dt><dd>{{upstreamStatus}}</dd>
        <dt>Amount</dt><dd id="detail-amount">{{amount}}{{#original}} <small class="muted">({{original}})</small>{{/original}}</dd>
        <dt>Outcome</dt><dd id="detail-outcome">{{#outcome}}<span class="outcome {{outcome}}">{{outcome}}</span>{{/outcome}}{{^outcome}}—{{/outcome}}</dd>
        <dt>Idempotency key</dt><dd class="mono" id="detail-idempotency">{{idempotencyKey}}{{#idempotencyAuto}} <small class="muted">(added by Keybrake)</small>{{/idempotencyAuto}}</dd>
        <dt>Upstream request id</dt><dd class="mono" id="detail-upstream-request-id">{{upstreamRequestId}}</dd>
        <dt>Run id</dt><dd class="mono">{{runId}}</dd>
        {{#duplicateOfHref}}<dt>Replay of</dt><dd><a href="{{duplicateOfHref}}" class="mono">{{duplicateOf}}</a></dd>{{/duplicateOfHref}}
        {{#resolvesHref}}<dt>Resolves</dt><dd><a href="{{resolvesHref}}" class="mono">{{resolves}}</a></dd>{{/resolvesHref}}
        {{#resolvedByHref}}<dt>Resolved by</dt><dd><a href="{{resolvedByHref}}" class="mono">{{resolvedBy}}</a></dd>{{/resolvedByHref}}
        <dt>Keybrake overhead</dt><dd>{{overhead}}</dd>
        <dt>Upstream latency</dt><dd>{{upstreamLatency}}</dd>
        </dl>
        {{/event}}
        {{#resolve}}
        <h2>Resolve the unknown outcome</h2>
        <p>The vendor did not answer, so Keybrake cannot know whether it acted; the reserved {{reserved}} counts as spent until you say.
        Check the vendor's dashboard{{#upstreamHint}} ({{upstreamHint}}){{/upstreamHint}}, then record what happened.</p>
        <form method="post" action="{{action}}" class="stack" id="resolve-form">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <label class="check"><input type="radio" name="outcome" value="settled" required> It happened: settle it for
        <input name="amount_usd" inputmode="decimal" size="10" value="{{reservedField}}" aria-label="Amount that moved, USD"> USD (at most {{reserved}})</label>
        <label class="check"><input type="radio" name="outcome" value="released"> It did not happen: release the reservation</label>
        <p><button type="submit" id="resolve">Record outcome</button></p>
        </form>
        {{/resolve}}
        <p><a href="/dashboard/audit">Back to the audit list</a></p>
        {{/body}}{{/layout}}
        """

    static let vendors = """
        {{<layout}}{{$title}}Vendor credentials{{/title}}{{$body}}
        <h1>Vendor credentials</h1>
        <p class="muted">Stored encrypted (AES-256-GCM); only a fingerprint of the secret is ever shown again.
        Saving replaces what is stored; proxied requests use the new credentials at once.</p>
        {{#vendors}}
        <section class="card vendor" id="vendor-{{name}}">
        <h2>{{title}}</h2>
        {{#stored}}<p>Stored: <span class="mono fingerprint">{{fingerprint}}</span>{{#accountSid}} for <span class="mono">{{accountSid}}</span>{{/accountSid}} <small class="muted">updated {{updated}}</small></p>{{/stored}}
        {{^stored}}<p class="muted">Not set: proxied {{title}} requests answer 403 vendor_credentials_missing.</p>{{/stored}}
        <form method="post" action="{{action}}" class="stack">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        {{#fields}}
        <label>{{text}} <input type="{{inputType}}" name="{{name}}" autocomplete="off" spellcheck="false" placeholder="{{placeholder}}" required></label>
        {{/fields}}
        <p><button type="submit">{{#stored}}Replace{{/stored}}{{^stored}}Save{{/stored}}</button>{{#stored}} <a class="danger-link" href="{{deleteHref}}">Delete…</a>{{/stored}}</p>
        </form>
        </section>
        {{/vendors}}
        {{/body}}{{/layout}}
        """

    static let vendorDelete = """
        {{<layout}}{{$title}}Delete {{title}} credentials{{/title}}{{$body}}
        <h1>Delete the {{title}} credentials?</h1>
        <p>Stored: <span class="mono">{{fingerprint}}</span>. After deleting, every proxied {{title}} request answers
        <code>403 vendor_credentials_missing</code> until new credentials are saved.</p>
        <form method="post" action="{{action}}" class="inline-actions">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <button type="submit" class="danger" id="confirm-delete">Delete credentials</button>
        <a href="/dashboard/vendors">Cancel</a>
        </form>
        {{/body}}{{/layout}}
        """
}
