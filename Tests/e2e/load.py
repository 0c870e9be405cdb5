"""Closed-loop HTTP load for test_14: N connections, each sending its next request as soon as the last answered,
for D seconds (or until SIGTERM). Prints one JSON object: answers per status and per Keybrake-Error-Code, transport
errors, latencies in ms (sorted), requests sent.

    python load.py --url URL --header "Authorization: Bearer …" --connections 64 --duration 5
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import aiohttp


async def run(options) -> dict:
    headers = dict(h.split(": ", 1) for h in options.header)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(options.duration, stop.set)
    out = {"statuses": {}, "codes": {}, "errors": 0, "sent": 0, "latencies_ms": []}
    connector = aiohttp.TCPConnector(limit=options.connections, limit_per_host=options.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def worker():
            while not stop.is_set():
                out["sent"] += 1
                started = time.perf_counter()
                try:
                    async with session.get(options.url, headers=headers) as r:
                        await r.read()
                        status, code = r.status, r.headers.get("Keybrake-Error-Code", "")
                except Exception:  # noqa: BLE001 - counted: a request without an answer
                    out["errors"] += 1
                    continue
                out["latencies_ms"].append((time.perf_counter() - started) * 1000)
                out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
                out["codes"][code] = out["codes"].get(code, 0) + 1
        await asyncio.gather(*(worker() for _ in range(options.connections)))
    out["latencies_ms"].sort()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", type=float, default=5)
    options = p.parse_args()
    json.dump(asyncio.run(run(options)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
