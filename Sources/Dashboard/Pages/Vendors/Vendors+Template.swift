extension Templates {
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
        {{#confirm}}
        {{>confirm_form}}
        {{/confirm}}
        {{/body}}{{/layout}}
        """
}
