"""A tiny stand-in for Stripe's API: POST /v1/charges answers a Stripe-shaped charge, everything else a
Stripe-shaped 404. It checks that Keybrake injected the real secret key (never the vault key).

    python fake_stripe.py PORT SECRET_KEY
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PORT = int(sys.argv[1])
SECRET = sys.argv[2]
COUNTER = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request on stderr, into the log file
        sys.stderr.write("fake-stripe: " + (fmt % args) + "\n")

    def reply(self, status: int, body: dict, request_id: str):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", request_id)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, message: str):
        self.reply(status, {"error": {"type": "invalid_request_error", "code": code, "message": message}}, "req_fake_error")

    def do_GET(self):
        self.error(404, "resource_missing", f"fake Stripe serves only POST /v1/charges, not GET {self.path}")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self.error(401, "invalid_api_key", "fake Stripe: the request did not carry the tenant's real secret key")
        if self.path.split("?")[0] != "/v1/charges":
            return self.error(404, "resource_missing", f"fake Stripe serves only POST /v1/charges, not {self.path}")
        n = next(COUNTER)
        self.reply(200, {
            "id": f"ch_fake{n}", "object": "charge", "amount": int(form.get("amount", "0")),
            "currency": form.get("currency", "usd"), "status": "succeeded", "paid": True, "livemode": False,
            "created": int(time.time()), "description": form.get("description"), "metadata": {},
        }, f"req_fake{n}")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
