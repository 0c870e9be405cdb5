extension Templates {
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
}
