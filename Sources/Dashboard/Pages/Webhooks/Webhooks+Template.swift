extension Templates {
    static let webhooks = """
        {{<layout}}{{$title}}Webhooks{{/title}}{{$body}}
        <h1>Webhooks</h1>
        <p class="muted">Budget alerts, signed per the Standard Webhooks spec (<code>webhook-id</code>, <code>webhook-timestamp</code>,
        <code>webhook-signature</code>). Failed deliveries are retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h.</p>
        {{#endpoints}}
        <section class="card webhook" id="endpoint-{{id}}">
        <h2 class="mono">{{url}}</h2>
        <p>{{#description}}{{description}} · {{/description}}{{events}} · {{format}}
        {{#enabled}}<span class="badge">enabled</span>{{/enabled}}{{^enabled}}<span class="badge danger">disabled</span> {{disabledReason}}{{/enabled}}
        {{#failingSince}}<span class="badge warn">failing since {{failingSince}}</span>{{/failingSince}}
        {{#rotationEnds}}<small class="muted">previous secret signs until {{rotationEnds}}</small>{{/rotationEnds}}</p>
        <div class="inline-actions">
        <form method="post" action="{{testAction}}"><input type="hidden" name="csrf" value="{{chrome.csrf}}"><button type="submit">Send test ping</button></form>
        <form method="post" action="{{rotateAction}}"><input type="hidden" name="csrf" value="{{chrome.csrf}}"><button type="submit">Rotate secret</button></form>
        </div>
        <table class="deliveries">
        <thead><tr><th>Event</th><th>Type</th><th>Status</th><th class="num">Attempts</th><th>Last answer</th><th class="num">Latency</th><th>Next retry</th></tr></thead>
        <tbody>
        {{#deliveries}}<tr class="{{rowClass}}"><td class="mono">{{eventId}}</td><td>{{type}}</td><td>{{status}}</td><td class="num">{{attempts}}</td><td>{{last}}</td><td class="num">{{latency}}</td><td>{{next}}</td></tr>{{/deliveries}}
        </tbody>
        </table>
        {{^deliveries}}<p class="muted">No deliveries yet.</p>{{/deliveries}}
        </section>
        {{/endpoints}}
        {{^endpoints}}<p>No webhook endpoints yet.</p>{{/endpoints}}
        {{#canAdd}}
        <section class="card">
        <h2>Add an endpoint</h2>
        <form method="post" action="/dashboard/webhooks" class="stack" id="add-webhook">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <label>URL (https) <input type="url" name="url" value="{{url}}" required placeholder="https://hooks.example.com/keybrake"></label>
        <label>Description <input type="text" name="description" value="{{description}}" maxlength="500"></label>
        <fieldset><legend>Events (none ticked: all)</legend>
        {{#eventTypes}}<label class="check"><input type="checkbox" name="event_{{.}}"> <span class="mono">{{.}}</span></label>{{/eventTypes}}
        </fieldset>
        <label>Format <select name="format"><option value="standard">standard (signed JSON)</option><option value="slack">slack (incoming webhook)</option></select></label>
        <p><button type="submit">Add endpoint</button></p>
        </form>
        </section>
        {{/canAdd}}
        {{/body}}{{/layout}}
        """

    static let webhookSecret = """
        {{<layout}}{{$title}}{{heading}}{{/title}}{{$body}}
        <h1>{{heading}}</h1>
        <p>Endpoint <span class="mono">{{url}}</span>. Its signing secret, shown only this once:</p>
        <p class="mono secret" id="webhook-secret">{{secret}}</p>
        {{#note}}<p class="muted">{{note}}</p>{{/note}}
        <p><a href="/dashboard/webhooks">Back to webhooks</a></p>
        {{/body}}{{/layout}}
        """
}
