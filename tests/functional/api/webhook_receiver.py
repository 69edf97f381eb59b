"""An independent webhook receiver, run as its own process by the tests.

It does not import the project: it checks `Custody-Signature` with hashlib/hmac alone, exactly
as design/api-conventions.md tells a customer to (t=<unix s>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>, reject if older than 300 s), de-duplicates on Custody-Event-Id, and
appends one JSON line per request to --out. The secret is re-read from --secret-file on every
request, so a test can rotate it. --fail-first N answers 500 to the first N valid deliveries.

    python webhook_receiver.py --port P --secret-file F --out F [--fail-first N]
"""

import argparse
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_S = 300


def verify(secret: str, header: str, body: bytes, now: int):
    try:
        fields = [p.split("=", 1) for p in header.split(",")]
        t = int(next(v for k, v in fields if k == "t"))
        sigs = [v for k, v in fields if k == "v1"]
    except (ValueError, StopIteration):
        return "malformed"
    if abs(now - t) > TOLERANCE_S:
        return "too_old"
    want = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return None if any(hmac.compare_digest(want, s) for s in sigs) else "mismatch"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    state = {"valid": 0, "seen": set()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            secret = open(args.secret_file).read().strip()
            reason = verify(secret, self.headers.get("Custody-Signature", ""), body, int(time.time()))
            event_id = self.headers.get("Custody-Event-Id", "")
            record = {"event_id": event_id, "verified": reason is None, "reason": reason}
            if reason is None:
                state["valid"] += 1
                if state["valid"] <= args.fail_first:
                    record["answered"] = 500
                else:
                    record["answered"] = 200
                    record["duplicate"] = event_id in state["seen"]
                    state["seen"].add(event_id)
                    record["event"] = json.loads(body)
            else:
                record["answered"] = 400
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(record["answered"])
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
