"""`custody dev webhook-receiver`: a tiny webhook endpoint for the walkthrough, the way a
customer's own would be. Every POST's `Custody-Signature` is checked against the endpoint
secret (HMAC-SHA256 over "<t>.<raw body>", at most 300 s old: design/api-conventions.md) and
one JSON line per delivery is printed: event id, type, verified or why not. Deliveries are
de-duplicated on Custody-Event-Id (at-least-once delivery), answered 200 when verified, 400
otherwise. The secret comes from an environment variable (never the command line, which other
users of the machine can read), default CUSTODY_WEBHOOK_SECRET.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from api.signing import verify_webhook
from node import limits

SEEN_EVENT_IDS_MAX = 10_000


def make_server(host: str, port: int, secret: str, out=sys.stdout) -> ThreadingHTTPServer:
    assert secret, "a webhook receiver needs its endpoint's secret"
    seen: dict[str, None] = {}

    class Handler(BaseHTTPRequestHandler):
        timeout = limits.DEV_WEBHOOK_READ_TIMEOUT_S  # a silent client never holds a thread for long

        def log_message(self, *_a):
            pass

        def _answer(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            declared = self.headers.get("Content-Length", "")
            if not declared.isdigit() or int(declared) > limits.DEV_WEBHOOK_BODY_BYTES_MAX:
                return self._answer(413, {"error": "body_missing_or_too_large"})
            body = self.rfile.read(int(declared))
            event_id = self.headers.get("Custody-Event-Id", "")
            reason = verify_webhook(secret, self.headers.get("Custody-Signature", ""), body, int(time.time()),
                                    limits.WEBHOOK_SIGNATURE_TOLERANCE_S)
            try:
                event_type = json.loads(body).get("type")
            except (ValueError, AttributeError):
                event_type = None
            duplicate = reason is None and event_id in seen
            if reason is None and not duplicate:
                seen[event_id] = None
                while len(seen) > SEEN_EVENT_IDS_MAX:
                    seen.pop(next(iter(seen)))
            line = {"event_id": event_id, "type": event_type, "verified": reason is None, "reason": reason,
                    "duplicate": duplicate}
            if reason is None and not duplicate:
                line["body"] = json.loads(body)
            print(json.dumps(line), file=out, flush=True)
            if reason is not None:
                return self._answer(400, {"error": reason})
            return self._answer(200, {"received": event_id})

    return ThreadingHTTPServer((host, port), Handler)


def serve(host: str, port: int, secret_env: str) -> int:
    secret = os.environ.get(secret_env, "")
    if not secret:
        print(f"custody dev webhook-receiver: set {secret_env} to the endpoint's secret (shown when you register it)",
              file=sys.stderr)
        return 2
    server = make_server(host, port, secret)
    print(f"custody dev webhook-receiver: listening on http://{host}:{port}/ (secret from {secret_env})",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
