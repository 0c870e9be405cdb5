/// The dashboard's stylesheet and its one small script, served from /dashboard/assets/ so the
/// Content-Security-Policy can forbid every inline style and script.
enum Assets {
    static let css = """
        :root { --fg: #1a202c; --muted: #5a6473; --line: #d9dee5; --bg: #f7f8fa; --accent: #2b59c3;
                --settled: #2b59c3; --reserved: #8fb3f0; --unknown: #e07b16; --warn: #fff4d6; --danger: #c53030; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
        header.top { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.5rem; background: #fff; border-bottom: 1px solid var(--line); }
        .brand { font-weight: 700; color: var(--fg); text-decoration: none; font-size: 1.1rem; }
        nav { display: flex; gap: 1rem; flex: 1; }
        nav a { color: var(--muted); text-decoration: none; padding: .2rem 0; }
        nav a[aria-current="page"] { color: var(--fg); border-bottom: 2px solid var(--accent); }
        .account { display: flex; gap: .8rem; align-items: center; color: var(--muted); }
        .account form { margin: 0; }
        main { max-width: 1150px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
        h1 { font-size: 1.5rem; margin: .8rem 0; }
        h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; }
        a { color: var(--accent); }
        code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; overflow-wrap: anywhere; }
        .muted { color: var(--muted); }
        small { font-size: .82em; }
        table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
        th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-size: .85em; color: var(--muted); font-weight: 600; background: #fbfcfd; }
        td.num, th.num { text-align: right; white-space: nowrap; }
        td.barcol, th.barcol { width: 30%; min-width: 160px; vertical-align: middle; }
        tr.near { background: var(--warn); }
        tr.over { background: #fde2e1; }
        tr.denied td:first-child { border-left: 3px solid var(--danger); }
        tr.unknown td:first-child { border-left: 3px solid var(--unknown); }
        svg.bar { display: block; width: 100%; height: 14px; border-radius: 3px; }
        svg.bar .track { fill: #e8ecf2; }
        .nocap { font-size: .85em; }
        figure.chart { margin: .5rem 0 1rem; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .5rem; }
        svg.chart { display: block; width: 100%; height: auto; max-height: 260px; }
        svg.chart .grid { stroke: #e8ecf2; stroke-width: 1; }
        svg.chart .tick { font-size: 11px; fill: var(--muted); }
        svg.chart .cap { stroke: var(--danger); stroke-width: 1.5; stroke-dasharray: 6 4; }
        svg.chart .caplabel { font-size: 11px; fill: var(--danger); }
        svg.chart .settled { fill: var(--settled); } svg.chart .reserved { fill: var(--reserved); } svg.chart .unknown { fill: var(--unknown); }
        figure.chart figcaption { font-size: .85em; color: var(--muted); }
        .legend-item { white-space: nowrap; margin-right: .6rem; }
        svg.chart .s0, .sw.s0 { fill: #2563eb; background: #2563eb; } svg.chart .s1, .sw.s1 { fill: #d97706; background: #d97706; }
        svg.chart .s2, .sw.s2 { fill: #059669; background: #059669; } svg.chart .s3, .sw.s3 { fill: #7c3aed; background: #7c3aed; }
        svg.chart .s4, .sw.s4 { fill: #db2777; background: #db2777; } svg.chart .s5, .sw.s5 { fill: #64748b; background: #64748b; }
        .secret { display: flex; gap: .5rem; } .secret input { flex: 1; }
        svg.bar .settled { fill: var(--settled); }
        svg.bar .reserved { fill: var(--reserved); }
        svg.bar .unknown { fill: var(--unknown); }
        .legend { white-space: nowrap; margin-left: .5rem; }
        .sw { display: inline-block; width: .8em; height: .8em; margin: 0 .25em 0 .6em; border-radius: 2px; vertical-align: -1px; }
        .sw.settled { background: var(--settled); } .sw.reserved { background: var(--reserved); } .sw.unknown { background: var(--unknown); }
        .card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem 1rem .8rem; margin: 1rem 0; }
        .card h2 { margin-top: .6rem; }
        .big { font-size: 1.6rem; margin: .2rem 0 .5rem; }
        .badge { display: inline-block; font-size: .75em; padding: 0 .45em; border-radius: 9px; background: #e2e8f0; color: var(--fg); }
        .badge.warn { background: #f6d77a; }
        .badge.danger { background: var(--danger); color: #fff; }
        .status, .decision, .outcome { display: inline-block; font-size: .85em; padding: 0 .45em; border-radius: 4px; background: #e2e8f0; }
        .status.active, .decision.allowed, .outcome.settled { background: #d5f2df; }
        .status.revoked, .decision.denied { background: #fde2e1; }
        .status.expired { background: #eee; }
        .decision.replayed { background: #e3e8fb; }
        .outcome.outcome_unknown { background: #fde3c8; }
        .flash { padding: .6rem .9rem; border-radius: 6px; border: 1px solid var(--line); background: #fff; }
        .flash.notice { background: #e6f6ec; border-color: #a6dcb8; }
        .flash.error { background: #fde2e1; border-color: #f3a5a1; }
        .flash.warn { background: var(--warn); border-color: #f0d48a; }
        form.stack { display: flex; flex-direction: column; gap: .35rem; max-width: 760px; }
        form.stack label { font-weight: 600; margin-top: .4rem; display: flex; flex-direction: column; gap: .2rem; }
        form.stack label.check { flex-direction: row; align-items: center; gap: .4rem; flex-wrap: wrap; font-weight: normal; }
        form.stack .row label { font-weight: normal; }
        section.vendor form.stack label { max-width: 460px; }
        form.stack > button { align-self: flex-start; }
        .row { display: flex; flex-wrap: wrap; gap: 1rem; }
        .row label { display: flex; flex-direction: column; gap: .2rem; }
        fieldset { border: 1px solid var(--line); border-radius: 6px; margin: .6rem 0; padding: .4rem .9rem .8rem; background: #fff; }
        input, select, textarea { font: inherit; font-weight: normal; padding: .35rem .5rem; border: 1px solid #b8c0cc; border-radius: 4px; background: #fff; }
        textarea { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; }
        button, .button { font: inherit; display: inline-block; padding: .4rem .9rem; border-radius: 4px; border: 1px solid var(--accent);
                          background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; }
        button.danger, .button.danger { background: var(--danger); border-color: var(--danger); }
        .danger-link { color: var(--danger); }
        button.linklike { background: none; border: none; color: var(--accent); padding: 0; text-decoration: underline; }
        .filters { display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; margin: .5rem 0 1rem; }
        .filters label { display: flex; flex-direction: column; font-size: .85em; color: var(--muted); }
        .pager { margin-top: .8rem; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.2rem; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8rem 1rem; }
        dl.facts dt { color: var(--muted); }
        dl.facts dd { margin: 0; }
        .token { display: flex; gap: .5rem; margin: 1rem 0; }
        .token input { flex: 1; font-size: .95rem; }
        .narrow { max-width: 520px; }
        .inline-actions { display: flex; gap: 1rem; align-items: center; }
        .vendor { font-weight: 600; }
        section.vendor { font-weight: normal; }
        """

    /// Progressive enhancement only: the copy button. Everything else works without JavaScript.
    static let js = """
        document.addEventListener('DOMContentLoaded', function () {
          document.querySelectorAll('[data-copy]').forEach(function (button) {
            button.hidden = false;
            button.addEventListener('click', function () {
              var field = document.getElementById(button.getAttribute('data-copy'));
              if (!field) { return; }
              field.select();
              var done = function () {
                button.textContent = 'Copied';
                setTimeout(function () { button.textContent = 'Copy'; }, 2000);
              };
              if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand('copy'); done(); });
              } else {
                document.execCommand('copy');
                done();
              }
            });
          });
        });
        """
}
