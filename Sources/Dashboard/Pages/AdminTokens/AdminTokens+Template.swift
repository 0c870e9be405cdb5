extension Templates {
    static let adminTokens = """
        {{<layout}}{{$title}}Admin tokens{{/title}}{{$body}}
        <h1>Admin tokens</h1>
        <p class="muted">Every admin token of this tenant that is not revoked. Secrets are never shown again; last use is
        recorded to the minute. A token minted with a leaked one survives that one's revocation: revoke the others.</p>
        <table class="tokens">
        <thead><tr><th>Id</th><th>Label</th><th>Created</th><th>Last used</th><th></th></tr></thead>
        <tbody>
        {{#tokens}}
        <tr id="token-{{id}}"><td class="mono">{{id}}</td><td>{{label}}</td><td>{{created}}</td><td>{{#lastUsed}}{{.}}{{/lastUsed}}{{^lastUsed}}<span class="muted">never</span>{{/lastUsed}}</td>
        <td>{{#current}}<strong>this session</strong>{{/current}}</td></tr>
        {{/tokens}}
        </tbody>
        </table>
        {{#hasOthers}}
        <form method="post" action="/dashboard/admin-tokens/revoke-others" class="inline-actions">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <button type="submit" class="danger" id="revoke-others">Revoke every other token</button>
        <span class="muted">Keeps the token of this session; ends the sessions and API use of all the others at once.</span>
        </form>
        {{/hasOthers}}
        {{/body}}{{/layout}}
        """
}
