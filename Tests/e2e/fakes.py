"""Fake upstreams for the end-to-end suite.

Each fake runs as its own process, so a test can kill one in the middle of a request:

    python fakes.py twilio --port P --account-sid AC… --auth-token …    Twilio Messages wire format
    python fakes.py resend --port P --api-key re_…                       Resend /emails wire format
    python fakes.py chaos  --port P --target http://127.0.0.1:LS         pass-through to localstripe, deduplicating
                                                                         POSTs on Idempotency-Key as Stripe does
                                                                         (localstripe itself does not)

Every fake records the requests it receives and takes faults over a small control API (JSON):

    GET  /_fake/requests        {"requests": [{"method","path","query","headers","body","t"}…]}
    POST /_fake/faults          {"faults": [fault…]} replaces the fault list
    POST /_fake/reset           forget requests and faults

A fault is {"path": substring of the path (optional), "method": (optional), "times": n (optional, default: forever),
"mode": "status" | "delay" | "drop" | "drop_after_forward" | "hang", "status": 500, "delay_ms": 300}:
  status              answer with a vendor-shaped error of that status, nothing else happens
  delay               wait delay_ms, then behave normally
  drop                close the connection without an answer; the vendor did nothing
  drop_after_forward  act (chaos: forward to the target), then close without an answer
  hang                (chaos) forward to the target, then hold the answer until the process is killed

`FakeClient` below is the test-side handle for the control API.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.faults: list[dict] = []
        self.idempotency: dict[str, tuple[int, dict]] = {}

    def record(self, entry: dict):
        with self.lock:
            self.requests.append(entry)

    def take_fault(self, method: str, path: str) -> dict | None:
        with self.lock:
            for fault in self.faults:
                if fault.get("method") and fault["method"] != method:
                    continue
                if fault.get("path") and fault["path"] not in path:
                    continue
                times = fault.get("times")
                if times is not None:
                    if times <= 0:
                        continue
                    fault["times"] = times - 1
                return dict(fault)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake"
    role = "chaos"
    options: argparse.Namespace
    state: State

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms per answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- plumbing -------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, obj, headers: dict | None = None):
        if getattr(self, "drop_answer", False):  # the vendor acted; the answer is lost
            self.drop_answer = False
            return self._drop()
        data = json.dumps(obj).encode() if not isinstance(obj, (bytes, bytearray)) else bytes(obj)
        self.send_response(status)
        sent = set()
        for k, v in (headers or {}).items():
            self.send_header(k, v)
            sent.add(k.lower())
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self):
        """Close the connection with no answer (RST, like a process that died)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")

    def _handle(self, method: str):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        body = self._read_body()
        if path.startswith("/_fake/"):
            return self._control(method, path, body)
        self.state.record({"method": method, "path": path, "query": query, "t": time.time(),
                           "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": body.decode("utf-8", "replace"),
                           # form bodies decoded, so tests can search for the words they sent
                           "text": urllib.parse.unquote_plus(body.decode("utf-8", "replace"))})
        fault = self.state.take_fault(method, path)
        if fault:
            mode = fault.get("mode")
            if mode == "delay":
                time.sleep(fault.get("delay_ms", 0) / 1000)
            elif mode == "status":
                return self._error(path, int(fault.get("status", 500)))
            elif mode == "drop":
                return self._drop()
        if self.role == "chaos":
            return self._forward(method, path, query, body, fault)
        self.drop_answer = bool(fault and fault.get("mode") == "drop_after_forward")
        if self.role == "twilio":
            return self._twilio(method, path, body)
        return self._resend(method, path, body)

    def _control(self, method: str, path: str, body: bytes):
        if path == "/_fake/requests":
            with self.state.lock:
                return self._send(200, {"requests": list(self.state.requests)})
        if path == "/_fake/faults" and method == "POST":
            faults = json.loads(body or b"{}").get("faults", [])
            with self.state.lock:
                self.state.faults = faults
            return self._send(200, {"faults": faults})
        if path == "/_fake/reset" and method == "POST":
            with self.state.lock:
                self.state.requests.clear()
                self.state.faults = []
            return self._send(200, {"ok": True})
        return self._send(404, {"error": "unknown control route"})

    def _error(self, path: str, status: int):
        if self.role == "chaos":
            kind = "api_error" if status >= 500 else "invalid_request_error"
            return self._send(status, {"error": {"type": kind, "message": f"Injected upstream {status}."}})
        if self.role == "twilio":
            return self._send(status, {"code": 20500 if status >= 500 else 21211, "message": f"Injected upstream {status}.",
                                       "more_info": "https://www.twilio.com/docs/errors/20500", "status": status})
        return self._send(status, {"statusCode": status, "name": "application_error" if status >= 500 else "validation_error",
                                   "message": f"Injected upstream {status}."})

    # ---- chaos: localstripe pass-through ----------------------------------------------------------------------

    def _forward(self, method: str, path: str, query: str, body: bytes, fault: dict | None):
        # Stripe replays the first result of a POST for the same Idempotency-Key (and account); localstripe does not.
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        dedupe = (self.headers.get("Stripe-Account", ""), key) if key else None
        if dedupe:
            with self.state.lock:
                stored = self.state.idempotency.get(dedupe)
            if stored:
                status, data, out = stored
                return self._send(status, data, {**out, "Idempotent-Replayed": "true"})
        target = urllib.parse.urlsplit(self.options.target)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            conn.request(method, path + ("?" + query if query else ""), body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self._send(502, {"error": {"type": "api_error", "message": f"chaos: target unreachable: {e}"}})
        finally:
            conn.close()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP and k.lower() != "date"}
        if dedupe and resp.status < 500:
            with self.state.lock:
                self.state.idempotency[dedupe] = (resp.status, data, out)
        mode = (fault or {}).get("mode")
        if mode == "drop_after_forward":
            return self._drop()
        if mode == "hang":
            while True:  # until the process is killed
                time.sleep(1)
        return self._send(resp.status, data, out)

    # ---- Twilio ---------------------------------------------------------------------------------------------

    def _twilio(self, method: str, path: str, body: bytes):
        expected = "Basic " + base64.b64encode(f"{self.options.account_sid}:{self.options.auth_token}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self._send(401, {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
                                    "status": 401})
        parts = path.strip("/").split("/")  # 2010-04-01 / Accounts / AC… / Messages.json
        if len(parts) < 4 or parts[0] != "2010-04-01" or parts[1] != "Accounts":
            return self._send(404, {"code": 20404, "message": "The requested resource was not found", "more_info": "", "status": 404})
        sid = parts[2]
        if sid != self.options.account_sid:
            return self._send(403, {"code": 20005, "message": "Account SID mismatch", "more_info": "", "status": 403})
        if method == "POST" and parts[3] == "Messages.json":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            to = form.get("To", "")
            if not to.startswith("+") or to == "+15005550001":
                return self._send(400, {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                                        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
            msg_sid = "SM" + uuid.uuid4().hex
            now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
            return self._send(201, {
                "sid": msg_sid, "account_sid": sid, "to": to, "from": form.get("From"), "body": form.get("Body", ""),
                "status": "queued", "num_segments": "1", "num_media": "0", "direction": "outbound-api",
                "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
                "date_created": now, "date_updated": now, "date_sent": None, "api_version": "2010-04-01",
                "messaging_service_sid": None, "subresource_uris": {"media": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}/Media.json"},
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{msg_sid}.json",
            }, {"Twilio-Request-Id": "RQ" + uuid.uuid4().hex})
        return self._send(404, {"code": 20404, "message": "The requested resource was not found", "more_info": "", "status": 404})

    # ---- Resend ---------------------------------------------------------------------------------------------

    def _resend(self, method: str, path: str, body: bytes):
        if self.headers.get("Authorization") != f"Bearer {self.options.api_key}":
            return self._send(401 if not self.headers.get("Authorization") else 403,
                              {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"})
        if method == "GET" and path.startswith("/emails/") and path.count("/") == 2:
            # Retrieve an email (GET /emails/{id}): a read that moves no money (test_14's tenant B).
            return self._send(200, {"object": "email", "id": path.rsplit("/", 1)[1], "last_event": "delivered"})
        if method != "POST" or path not in ("/emails", "/emails/batch"):
            return self._send(404, {"statusCode": 404, "name": "not_found", "message": "The requested endpoint does not exist."})
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return self._send(400, {"statusCode": 400, "name": "validation_error", "message": "Invalid JSON body."})
        emails = payload if path == "/emails/batch" else [payload]
        if not isinstance(emails, list) or not emails:
            return self._send(422, {"statusCode": 422, "name": "validation_error", "message": "Expected a list of emails."})
        for email in emails:
            for field in ("from", "to", "subject"):
                if not isinstance(email, dict) or not email.get(field):
                    return self._send(422, {"statusCode": 422, "name": "validation_error",
                                            "message": f"Missing `{field}` field."})
        key = self.headers.get("Idempotency-Key")
        if key:  # Resend dedupes on Idempotency-Key (24 h)
            with self.state.lock:
                if (path, key) in self.state.idempotency:
                    status, stored = self.state.idempotency[(path, key)]
                    return self._send(status, stored)
        result = {"data": [{"id": str(uuid.uuid4())} for _ in emails]} if path == "/emails/batch" else {"id": str(uuid.uuid4())}
        if key:
            with self.state.lock:
                self.state.idempotency[(path, key)] = (200, result)
        return self._send(200, result)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class FakeClient:
    """The test side of a fake: its URL, recorded requests and faults."""

    def __init__(self, url: str):
        self.url = url

    def _call(self, method: str, path: str, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict]:
        rows = self._call("GET", "/_fake/requests")["requests"]
        return [r for r in rows if (path is None or path in r["path"]) and (method is None or r["method"] == method)]

    def faults(self, *faults: dict):
        self._call("POST", "/_fake/faults", {"faults": list(faults)})

    def reset(self):
        self._call("POST", "/_fake/reset", {})


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["chaos", "twilio", "resend"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target", default="")
    p.add_argument("--account-sid", default="")
    p.add_argument("--auth-token", default="")
    p.add_argument("--api-key", default="")
    options = p.parse_args(argv)
    handler = type("H", (Handler,), {"role": options.role, "options": options, "state": State()})
    server = Server(("127.0.0.1", options.port), handler)
    print(f"fake {options.role} listening on 127.0.0.1:{options.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
