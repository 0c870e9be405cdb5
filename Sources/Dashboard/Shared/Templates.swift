import Mustache

/// The dashboard's Mustache templates, compiled into the binary (no template files to deploy).
/// Rule: user data only ever appears in `{{ }}` (HTML-escaped, quotes included, so it is safe in attributes too);
/// these templates never use `{{{ }}}`.
enum Templates {
    static let all: [String: String] = [
        "layout": layout, "bar": bar, "spend_cells": spendCells, "confirm_form": confirmForm, "chart": chart, "webhooks": webhooks, "webhook": webhook, "webhook_secret": webhookSecret, "error": error, "login": login, "overview": overview,
        "keys": keys, "key_new": keyNew, "key_created": keyCreated, "key": key, "key_revoke": keyRevoke,
        "audit": audit, "audit_event": auditEvent, "vendors": vendors, "vendor_delete": vendorDelete,
        "admin_tokens": adminTokens,
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
        <a href="/dashboard/webhooks"{{#navWebhooks}} aria-current="page"{{/navWebhooks}}>Webhooks</a>
        <a href="/dashboard/admin-tokens"{{#navAdminTokens}} aria-current="page"{{/navAdminTokens}}>Admin tokens</a>
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

    /// A stacked bar: settled, reserved and outcome-unknown spend against the cap (1000 units = the cap). A period
    /// with no cap draws no bar, only its text: a bar filled to its own spend read as "cap reached".
    static let bar = """
        {{#bar.capped}}<svg class="bar" viewBox="0 0 1000 14" preserveAspectRatio="none" role="img" aria-label="{{bar.text}}"><title>{{bar.text}}</title><rect class="track" width="1000" height="14"/><rect class="settled" width="{{bar.settledW}}" height="14"/><rect class="reserved" x="{{bar.reservedX}}" width="{{bar.reservedW}}" height="14"/><rect class="unknown" x="{{bar.unknownX}}" width="{{bar.unknownW}}" height="14"/></svg>{{/bar.capped}}{{^bar.capped}}<span class="nocap muted">{{bar.text}}</span>{{/bar.capped}}
        """

    /// The cells a spend table's row ends with (overview by key and by label, a key's periods), read from a
    /// `SpendRow`: the bar, the spend, the cap with the percent used, and the settled / reserved / unknown split.
    /// Ends with a newline: a standalone `{{>spend_cells}}` line is replaced by these lines as they are.
    static let spendCells = """
        <td class="barcol">{{>bar}}</td>
        <td class="num spent">{{spent}}</td>
        <td class="num">{{capText}}{{#percent}}<br><small class="muted">{{percent}}</small>{{/percent}}</td>
        <td class="num">{{settled}}</td>
        <td class="num">{{reserved}}</td>
        <td class="num">{{unknown}}</td>

        """

    /// The last step before something that cannot be undone (revoking a key, deleting credentials): a `ConfirmForm`.
    static let confirmForm = """
        <form method="post" action="{{action}}" class="inline-actions">
        <input type="hidden" name="csrf" value="{{chrome.csrf}}">
        <button type="submit" class="danger" id="{{buttonId}}">{{buttonText}}</button>
        <a href="{{cancelHref}}">Cancel</a>
        </form>

        """

    static let error = """
        {{<layout}}{{$title}}{{heading}}{{/title}}{{$body}}
        <h1>{{heading}}</h1>
        <p class="flash error" role="alert">{{message}}</p>
        <p><a href="/dashboard">Back to the dashboard</a></p>
        {{/body}}{{/layout}}
        """

}
