extension Templates {
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
        <h2>Spend over the last 30 days</h2>
        <p class="muted">Settled, reserved and outcome-unknown spend per day, by label (each key's own calendar day).
        <code>GET /v1/spend/series</code> has it as JSON or CSV.</p>
        {{>chart}}
        </section>
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
        {{>spend_cells}}
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
        {{>spend_cells}}
        </tr>
        {{/labelRows}}
        </tbody>
        </table>
        </section>
        {{/body}}{{/layout}}
        """
}
