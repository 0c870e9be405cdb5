extension Templates {
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
        {{/key}}
        {{#parent}}<p id="key-parent">Child key of <a href="{{href}}">{{text}}</a></p>{{/parent}}
        {{#key}}
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
        {{>spend_cells}}
        </tr>
        {{/periods}}
        </tbody>
        </table>
        <h2>Today by hour</h2>
        {{#hourChart}}{{>chart}}{{/hourChart}}
        <h2>Last 30 days</h2>
        {{#dayChart}}{{>chart}}{{/dayChart}}
        <p class="muted">Settled, reserved and outcome-unknown spend in the key's time zone, its child keys' included; the dashed line is the daily cap.</p>
        <p><a href="{{auditHref}}" id="key-audit">Recent calls with this key</a></p>
        {{#runs}}
        <h2>Runs (child keys)</h2>
        <p class="muted">{{count}} child keys, {{active}} active; together they have spent {{counted}} (included above).
        <a href="{{auditHref}}" id="runs-audit">Their calls</a></p>
        <table class="spend" id="key-runs">
        <thead><tr><th>Run</th><th>Status</th><th class="barcol">Spend vs cap</th><th class="num">Spent</th><th class="num">Cap</th><th>Expires</th><th></th></tr></thead>
        <tbody>
        {{#rows}}
        <tr class="{{spend.rowClass}}" data-key="{{id}}">
        <td><a href="{{href}}">{{label}}</a>{{#runId}}<br><small class="muted mono">{{.}}</small>{{/runId}}</td>
        <td><span class="status {{status}}">{{status}}</span></td>
        {{#spend}}<td class="barcol">{{>bar}}</td><td class="num spent">{{spent}}</td><td class="num">{{capText}}</td>{{/spend}}
        <td>{{expires}}</td>
        <td>{{#revokeHref}}<a class="button danger" href="{{.}}">Revoke…</a>{{/revokeHref}}</td>
        </tr>
        {{/rows}}
        </tbody>
        </table>
        {{#more}}<p class="muted">Showing the newest runs; the API lists them all: <code>GET /v1/keys/{id}/children</code>.</p>{{/more}}
        {{/runs}}
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
        {{#confirm}}
        {{>confirm_form}}
        {{/confirm}}
        {{/body}}{{/layout}}
        """
}
