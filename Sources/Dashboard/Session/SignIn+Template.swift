extension Templates {
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
}
