extension Templates {
    static let webhooks = """
        {{<layout}}{{$title}}Webhooks{{/title}}{{$body}}
        <h1>Webhooks</h1>
        <p class="muted">Budget alerts, signed per Standard Webhooks: thresholds crossed, caps reached, unknown outcomes, revoked and expiring keys.</p>
        <table id="webhooks">
        <thead><tr><th>Endpoint</th><th>Events</th><th>Format</th><th>State</th></tr></thead>
        <tbody>
        {{#endpoints}}
        <tr data-endpoint-id="{{id}}">
        <td><a href="{{href}}">{{url}}</a><br><small class="mono">{{id}}</small>{{#description}}<br><small class="muted">{{.}}</small>{{/description}}</td>
        <td>{{events}}</td>
        <td>{{format}}</td>
        <td><span class="status {{state}}">{{state}}</span>{{#disabledReason}}<br><small>{{.}}</small>{{/disabledReason}}{{#failingSince}}<br><small class="muted">failing since {{.}}</small>{{/failingSince}}</td>
        </tr>
        {{/endpoints}}
        </tbody>
        </table>
        {{^endpoints}}<p>No endpoints yet.</p>{{/endpoints}}
        {{#form}}
        <h2>Add an endpoint</h2>
        <form method="post" action="/dashboard/webhooks" class="stack" id="new-webhook">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <label for="webhook-url">URL <small class="muted">(https, a public address)</small></label>
        <input id="webhook-url" name="url" value="{{url}}" maxlength="2000" required>
        <label for="webhook-description">Description</label>
        <input id="webhook-description" name="description" value="{{description}}" maxlength="500">
        <fieldset><legend>Events <small class="muted">(none ticked = all)</small></legend>
        {{#eventTypes}}<label class="check"><input type="checkbox" name="ev_{{.}}" value="1"> <code>{{.}}</code></label>{{/eventTypes}}
        </fieldset>
        <label class="check"><input type="checkbox" name="format" value="slack"{{#slack}} checked{{/slack}}> Slack-compatible body (<code>{"text": …}</code>)</label>
        <p><button type="submit" id="add-webhook">Add endpoint</button></p>
        </form>
        {{/form}}
        {{/body}}{{/layout}}
        """

    static let webhook = """
        {{<layout}}{{$title}}Webhook {{endpoint.url}}{{/title}}{{$body}}
        {{#endpoint}}
        <h1>Webhook endpoint <span class="status {{state}}" id="webhook-state">{{state}}</span></h1>
        <p class="mono" id="webhook-url">{{url}}</p>
        <dl class="facts"><dt>Id</dt><dd class="mono">{{id}}</dd><dt>Events</dt><dd>{{events}}</dd><dt>Format</dt><dd>{{format}}</dd>
        {{#disabledReason}}<dt>Disabled</dt><dd id="webhook-disabled">{{.}}</dd>{{/disabledReason}}</dl>
        {{/endpoint}}
        <div class="inline-actions">
        <form method="post" action="{{testAction}}"><input type="hidden" name="csrf" value="{{chrome.csrf}}"><button type="submit" id="send-test">Send a test event</button></form>
        <form method="post" action="{{rotateAction}}"><input type="hidden" name="csrf" value="{{chrome.csrf}}"><button type="submit" id="rotate-secret">Rotate the secret</button></form>
        </div>
        <h2>Deliveries</h2>
        <table id="deliveries">
        <thead><tr><th>Event</th><th>State</th><th class="num">Attempts</th><th>Last result</th><th class="num">Latency</th><th>Next try</th><th>Created</th></tr></thead>
        <tbody>
        {{#deliveries}}
        <tr data-event-id="{{eventId}}"><td><code>{{eventType}}</code><br><small class="mono">{{eventId}}</small></td><td>{{state}}</td><td class="num">{{attempts}}</td>
        <td>{{lastResult}}</td><td class="num">{{latency}}</td><td>{{next}}</td><td>{{created}}</td></tr>
        {{/deliveries}}
        </tbody>
        </table>
        {{^deliveries}}<p>No deliveries yet.</p>{{/deliveries}}
        <p><a href="/dashboard/webhooks">All endpoints</a></p>
        {{/body}}{{/layout}}
        """

    static let webhookSecret = """
        {{<layout}}{{$title}}Signing secret{{/title}}{{$body}}
        <h1>{{heading}}</h1>
        <p class="mono">{{url}}</p>
        <p class="flash warn">Copy the signing secret now: it is shown only this once. Verify each delivery with it (Standard Webhooks; README "Budget alerts").</p>
        <div class="secret"><input id="webhook-secret" class="mono" readonly value="{{secret}}" aria-label="Signing secret"></div>
        <p><a href="{{href}}" id="webhook-link">Open the endpoint</a> · <a href="/dashboard/webhooks">All endpoints</a></p>
        {{/body}}{{/layout}}
        """
}
