#!/usr/bin/env python3
"""Turns a `make bench` results file into the table (and compares two runs).

  python3 Benchmarks/report.py Benchmarks/results/latest.json        print one run's table, targets and profile
  python3 Benchmarks/report.py OLD.json NEW.json                       compare two runs row by row

Overhead = a row's latency percentile minus the same percentile of the direct (no proxy) row of the same load
mode and request kind, measured in the same run. "× nginx" divides that by nginx's overhead on the same row.
"""
import json
import sys

MODE_LABEL = {"seq": "1 conn"}
KIND_LABEL = {"get": "GET (non-metered)", "charge": "POST charge (metered)", "replay": "POST replay (idempotent)",
              "cap": "POST charge, hot key, cap hit mid-run",
              "childcap": "POST charge, 32 children of one hot parent, cap hit mid-run"}
TARGET_LABEL = {"direct": "direct", "nginx": "nginx", "keybrake": "Keybrake"}
PCTS = ["50", "90", "99", "99.9"]


def mode_label(mode):
    if mode in MODE_LABEL:
        return MODE_LABEL[mode]
    if mode.startswith("r"):
        return f"{int(mode[1:]):,}/s"
    return "saturation" if mode == "sat" else mode


def baseline_kind(kind):
    return "get" if kind == "get" else "charge"


def find(rows, mode, target, kind):
    return next((r for r in rows if r["mode"] == mode and r["target"] == target and r["kind"] == kind), None)


def pct(row, p):
    return row["latency_us"]["percentiles"][p] / 1000.0


def overheads(rows, row):
    """{p: (overhead ms vs direct, ratio to nginx's overhead)} for the row's mode and kind."""
    out = {}
    direct = find(rows, row["mode"], "direct", baseline_kind(row["kind"]))
    nginx = find(rows, row["mode"], "nginx", baseline_kind(row["kind"]))
    if not direct or row["target"] == "direct":
        return out
    for p in PCTS:
        ovh = pct(row, p) - pct(direct, p)
        ratio = None
        if nginx and row["target"] != "nginx":
            n_ovh = pct(nginx, p) - pct(direct, p)
            ratio = ovh / n_ovh if n_ovh > 0.005 else None
        out[p] = (ovh, ratio)
    return out


def proxy_cpu(row):
    c = row["cpu_us_per_request"]
    if row["target"] == "keybrake":
        return c["keybrake"] + c["postgres"]
    if row["target"] == "nginx":
        return c["nginx_proxy"]
    return c["nginx_upstream"]


def summarize(results):
    rows = results["rows"]
    s = {}

    def ovh(mode, kind, p):
        r = find(rows, mode, "keybrake", kind)
        o = overheads(rows, r) if r else {}
        return o.get(p, (None, None))

    s["non_metered_overhead_p50_ms"], s["non_metered_overhead_p50_x_nginx"] = ovh("seq", "get", "50")
    s["non_metered_overhead_p99_ms"], s["non_metered_overhead_p99_x_nginx"] = ovh("seq", "get", "99")
    s["metered_overhead_p50_ms"], s["metered_overhead_p50_x_nginx"] = ovh("seq", "charge", "50")
    s["metered_overhead_p99_ms"], s["metered_overhead_p99_x_nginx"] = ovh("seq", "charge", "99")
    for kind, key in [("get", "sat_non_metered_rps"), ("charge", "sat_metered_rps")]:
        r = find(rows, "sat", "keybrake", kind)
        n = find(rows, "sat", "nginx", kind)
        s[key] = r["rps"] if r else None
        s[key + "_x_nginx"] = (r["rps"] / n["rps"]) if r and n else None
    cap = find(rows, "sat", "keybrake", "cap")
    if cap:
        s["cap_allowed_rps_until_cap"] = cap.get("allowed_rps_until_cap")
        s["cap_charges"] = cap.get("cap_charges")
        s["cap_upstream_charges"] = cap.get("upstream_charges")
        s["overshoot_charges"] = cap.get("overshoot_charges", 0)
        s["ledger_over_cap"] = cap.get("ledger_over_cap")
        s["cap_reached"] = cap.get("cap_reached")
    child = find(rows, "sat", "keybrake", "childcap")
    if child:
        s["child_cap_allowed_rps_until_cap"] = child.get("allowed_rps_until_cap")
        s["child_cap_overshoot_charges"] = child.get("overshoot_charges", 0)
        s["child_cap_ledger_over_cap"] = child.get("ledger_over_cap")
        if cap and cap.get("allowed_rps_until_cap") and child.get("allowed_rps_until_cap"):
            s["child_cap_x_hot_key"] = child["allowed_rps_until_cap"] / cap["allowed_rps_until_cap"]
    mint = (results.get("profile") or {}).get("child_keys") or {}
    s["child_mint_per_s"] = mint.get("mint_4_clients_per_s")
    dash = (results.get("profile") or {}).get("dashboard") or {}
    if dash.get("pages"):
        s["dashboard_audit_rows"] = dash.get("audit_rows")
        s["dashboard_slowest_page_p50_ms"] = max(v["p50_ms"] for v in dash["pages"].values())
    for k, v in list(s.items()):
        if isinstance(v, float):
            s[k] = round(v, 3)
    return s


def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.1f}×"


def render_table(results):
    rows = results["rows"]
    head = ["load", "path", "conns", "req/s", "p50", "p90", "p99", "p99.9", "overhead p50", "overhead p99",
            "÷ nginx ovh p50", "÷ nginx ovh p99", "req/s ÷ nginx", "CPU µs/req proxy", "CPU µs/req machine", "non-2xx", "overshoot"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        o = overheads(rows, r)
        nginx = find(rows, r["mode"], "nginx", baseline_kind(r["kind"]))
        rps_ratio = r["rps"] / nginx["rps"] if nginx and r["mode"] == "sat" and r["target"] != "nginx" else None
        kind = "GET" if r["kind"] == "get" else "POST charge"
        path = f"{TARGET_LABEL[r['target']]} {kind}" if r["target"] != "keybrake" else f"Keybrake {KIND_LABEL[r['kind']]}"
        rps = f"{r['rps']:,.0f}"
        if r.get("rate_target"):
            rps += f" (of {r['rate_target']:,})"
        if r["kind"] in ("cap", "childcap") and r.get("allowed_rps_until_cap"):
            rps += f"; {r['allowed_rps_until_cap']:,.0f} allowed until cap"
        overshoot = "–"
        if r["kind"] in ("cap", "childcap"):
            overshoot = f"{r['overshoot_charges']} ({r['upstream_charges']:,} charges reached upstream, cap {r['cap_charges']:,}"
            overshoot += ")" if r.get("cap_reached") else "; cap NOT reached: run longer)"
        cells = [mode_label(r["mode"]), path, str(r["connections"]), rps] + [fmt(pct(r, p)) for p in PCTS] + [
            fmt(o["50"][0]) if o else "–", fmt(o["99"][0]) if o else "–",
            fmt_ratio(o["50"][1]) if o else "–", fmt_ratio(o["99"][1]) if o else "–",
            fmt(rps_ratio, 2) if rps_ratio else "–",
            f"{proxy_cpu(r):.0f}", f"{r['cpu_us_per_request']['machine']:.0f}",
            f"{r['non_2xx']:,}", overshoot]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_targets(results):
    s = results["summary"]

    def check(ok):
        return "met" if ok else "MISSED"

    out = ["Targets (DESIGN §12), this run:"]
    items = [
        ("non-metered overhead p50 ≤ 0.5 ms", s.get("non_metered_overhead_p50_ms"), lambda v: v <= 0.5, "ms",
         s.get("non_metered_overhead_p50_x_nginx")),
        ("non-metered overhead p99 ≤ 2 ms", s.get("non_metered_overhead_p99_ms"), lambda v: v <= 2.0, "ms",
         s.get("non_metered_overhead_p99_x_nginx")),
        ("metered overhead p50 ≤ 1.5 ms", s.get("metered_overhead_p50_ms"), lambda v: v <= 1.5, "ms",
         s.get("metered_overhead_p50_x_nginx")),
        ("non-metered saturation ≥ 8,000 req/s", s.get("sat_non_metered_rps"), lambda v: v >= 8000, "req/s",
         s.get("sat_non_metered_rps_x_nginx")),
        ("metered, one hot key ≥ 1,500 req/s", s.get("cap_allowed_rps_until_cap") or s.get("sat_metered_rps"), lambda v: v >= 1500, "req/s",
         s.get("sat_metered_rps_x_nginx")),
        ("zero overshoot (upstream charges ≤ cap, ledger ≤ cap)", s.get("overshoot_charges"),
         lambda v: v == 0 and not s.get("ledger_over_cap"), "charges over the cap", None),
    ]
    if s.get("child_cap_overshoot_charges") is not None:
        items.append(("zero overshoot, 32 children of one hot parent (issue 15)", s["child_cap_overshoot_charges"],
                      lambda v: v == 0 and not s.get("child_cap_ledger_over_cap"), "charges over the cap", None))
    if s.get("dashboard_slowest_page_p50_ms") is not None:
        out_label = f"dashboard pages < 50 ms server-side with {s.get('dashboard_audit_rows') or 0:,} audit rows (issue 7; slowest page, p50)"
        items.append((out_label, s["dashboard_slowest_page_p50_ms"], lambda v: v < 50 and (s.get("dashboard_audit_rows") or 0) >= 10_000,
                      "ms", None))
    for label, value, ok, unit, ratio in items:
        if value is None:
            out.append(f"  - {label}: not measured")
            continue
        extra = ""
        if ratio is not None:
            extra = f" ({ratio:.2f}× nginx's)" if unit == "req/s" else f" ({ratio:.1f}× nginx's overhead)"
        shown = f"{value:,.0f}" if unit == "req/s" else (f"{value:.3f}" if unit == "ms" else f"{value}")
        out.append(f"  - {label}: {shown} {unit}{extra} — {check(ok(value))}")
    if s.get("child_cap_allowed_rps_until_cap") is not None:
        ratio = s.get("child_cap_x_hot_key")
        out.append(f"  - charges on children of one hot parent: {s['child_cap_allowed_rps_until_cap']:,.0f} allowed/s until the cap"
                   + (f" ({ratio:.2f}× the single hot key's)" if ratio else ""))
    if s.get("child_mint_per_s") is not None:
        out.append(f"  - child keys minted: {s['child_mint_per_s']:,.1f}/s from 4 clients (one argon2id hash each, ~27 ms of a core:"
                   " 2 cores bound it near 70/s)")
    return "\n".join(out)


def render_profile(results):
    prof = results.get("profile") or {}
    rows = results["rows"]
    out = ["Where the time goes"]
    kb = [r for r in rows if r["target"] == "keybrake"]
    if kb:
        out.append("  CPU per request (µs; keybrake process / its Postgres backends / everything on the machine):")
        for r in kb:
            c = r["cpu_us_per_request"]
            a = r.get("audit") or {}
            oh = a.get("overhead_us") or {}
            out.append(f"    {r['name']:24s} keybrake {c['keybrake']:6.0f}  postgres {c['postgres']:6.0f}  machine {c['machine']:6.0f}"
                       f"  (other load {c['other']:.0f})  keybrake context switches {c.get('keybrake_ctx_switches', 0):5.1f}"
                       f"   audit overhead_us p50 {fmt(oh.get('p50'), 0)} p99 {fmt(oh.get('p99'), 0)}")
    anchors = prof.get("anchors") or {}
    if anchors:
        h, r = anchors.get("health"), anchors.get("ready")
        out.append(f"  Floor, one connection: GET /health (HTTP server only) p50 {h['p50_us']} µs, keybrake CPU {h['keybrake_cpu_us']} µs/request, "
                   f"{h['keybrake_ctx_switches']} context switches; GET /ready (+ one SELECT 1 under a timeout) p50 {r['p50_us']} µs, "
                   f"{r['keybrake_cpu_us']} µs, {r['keybrake_ctx_switches']} context switches")
        hs = anchors.get("health_saturation")
        if hs:
            out.append(f"  Floor at saturation: GET /health, {results['meta'].get('sat_connections', 32)} connections: {hs['rps']:,} req/s, "
                       f"keybrake CPU {hs['keybrake_cpu_us']} µs/request")
    dash = prof.get("dashboard") or {}
    if dash.get("pages"):
        out.append(f"  Dashboard, server-side time (Server-Timing total, 21 loads each, {dash.get('audit_rows', 0):,} audit rows): "
                   + ", ".join(f"{page} p50 {v['p50_ms']:.1f} / max {v['max_ms']:.1f} ms" for page, v in dash["pages"].items()))
    a2 = prof.get("argon2")
    if a2:
        out.append(f"  argon2id: first request of a new key {a2['first_request_ms']} ms, then {a2['cached_p50_ms']} ms from the "
                   f"verified-token cache (one verify ≈ {a2['verify_cost_ms']} ms)")
    pg = prof.get("postgres") or {}
    for kind, p in pg.items():
        out.append(f"  Postgres per {('non-metered GET' if kind == 'get' else 'metered charge')} (1 connection, {p['requests']} requests, "
                   f"p50 {p['latency_p50_us'] / 1000:.3f} ms): {p['round_trips_per_request']} round trips, "
                   f"{p['wal_fsyncs_per_request']} WAL fsyncs, {p['wal_bytes_per_request']} WAL bytes, "
                   f"{p['db_exec_us_per_request']} µs executing")
        for s in p["top_level"]:
            out.append(f"      {s['calls_per_request']:5.2f}×  {s['mean_us']:7.1f} µs  {s['query']}")
        if p["nested"]:
            out.append("      inside the functions (top by time):")
            for s in p["nested"][:6]:
                out.append(f"        {s['calls_per_request']:5.2f}×  {s['mean_us']:7.1f} µs  {s['query']}")
    perf = prof.get("perf") or {}
    for kind, p in perf.items():
        cats = ", ".join(f"{k} {v}%" for k, v in p["categories"].items())
        what = "non-metered GET" if kind == "get" else "metered charge"
        if "keybrake_cpu_us_per_request" in p:
            threads = ", ".join(f"{k} {v}%" for k, v in list(p.get("threads_pct", {}).items())[:4])
            out.append(f"  keybrake CPU per {what}, one connection: {p['keybrake_cpu_us_per_request']} µs without perf "
                       f"({p.get('keybrake_cpu_us_per_request_under_perf', '?')} µs while sampled), "
                       f"{p['keybrake_ctx_switches_per_request']} context switches; by thread: {threads}")
        out.append(f"    self time by category: {cats}")
        if p.get("inclusive"):
            out.append("    inclusive time of the pipeline's frames (% of keybrake CPU ≈ µs per request):")
            for e in p["inclusive"][:16]:
                out.append(f"      {e['pct']:5.2f}% ≈ {e['us_per_request']:6.1f} µs  {e['frame'][:110]}")
        out.append("    top symbols (self):")
        for e in p["top"][:10]:
            out.append(f"      {e['pct']:5.2f}%  {e['dso'][:22]:22s} {e['symbol'][:110]}")
    return "\n".join(out)


def render(results):
    m = results["meta"]
    head = (f"Keybrake benchmark {m['started_utc']} — {m['cpu']}, {m['cores']} cores, {m['memory_mib']:,} MiB, {m['os']}, "
            f"kernel {m['kernel']}; commit {m['git_commit']}{' (dirty)' if m.get('git_dirty') else ''}; {m['nginx']}; "
            f"PostgreSQL {m['postgres']}; wrk runs of {m['duration_s']} s; load average at start {' '.join(m['load_avg_start'])}, "
            f"end {' '.join(m.get('load_avg_end', []))}.\n"
            "Everything on 127.0.0.1 and the same cores (wrk, nginx, Postgres, keybrake). Latencies in ms; overhead = percentile "
            "minus the direct row's of the same load and kind; ÷ nginx = that overhead over nginx's.\n")
    return "\n\n".join([head + render_table(results), render_targets(results), render_profile(results)])


def compare(a, b):
    lines = [f"| row | req/s {a['meta']['started_utc']} | req/s {b['meta']['started_utc']} | Δ | p50 old → new | p99 old → new |",
             "|---|---|---|---|---|---|"]
    for r in b["rows"]:
        old = next((x for x in a["rows"] if x["name"] == r["name"]), None)
        if not old:
            continue
        d = (r["rps"] - old["rps"]) / old["rps"] * 100 if old["rps"] else 0
        lines.append(f"| {r['name']} | {old['rps']:,.0f} | {r['rps']:,.0f} | {d:+.0f}% | {fmt(pct(old, '50'))} → {fmt(pct(r, '50'))} | "
                     f"{fmt(pct(old, '99'))} → {fmt(pct(r, '99'))} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) == 2:
        with open(argv[1]) as f:
            res = json.load(f)
        res.setdefault("summary", summarize(res))
        print(render(res))
    elif len(argv) == 3:
        with open(argv[1]) as f:
            a = json.load(f)
        with open(argv[2]) as f:
            b = json.load(f)
        print(compare(a, b))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
