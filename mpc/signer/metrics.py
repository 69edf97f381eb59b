"""Prometheus metrics and the health endpoint of one signer peer (its own registry)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, peers=()):
        # Label values come only from the configured peers: a name a peer sends (an Abort's
        # culprits) is counted as "unknown", so no peer can grow the label set.
        self.peers = frozenset(peers)
        r = self.registry = CollectorRegistry()
        self.sessions = Counter("custody_signer_sessions_total", "tss sessions ended at this peer", ["protocol", "outcome"], registry=r)
        self.latency = Histogram("custody_signer_session_seconds", "tss session duration at this peer", ["protocol"],
                                 buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 40, 80), registry=r)
        self.aborts = Counter("custody_signer_aborts_total", "aborted sessions by named culprit", ["protocol", "culprit"], registry=r)
        self.refusals = Counter("custody_signer_requests_refused_total", "requests this peer refused, by reason", ["reason"], registry=r)
        self.envelopes_refused = Counter("custody_signer_envelopes_refused_total", "envelopes refused, by reason", ["reason"], registry=r)
        self.signatures = Counter("custody_signer_signatures_total", "signatures this peer took part in producing", registry=r)
        self.ceremonies = Counter("custody_signer_ceremonies_total", "ceremonies coordinated here", ["protocol", "outcome"], registry=r)
        self.active = Gauge("custody_signer_active_sessions", "tss sessions running here", registry=r)
        self.records_append = Histogram("custody_signer_records_append_seconds", "one durable (fsynced) append to the records",
                                        buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1), registry=r)
        self.quarantined = Gauge("custody_signer_peer_quarantined", "1 while this peer keeps a peer in quarantine", ["peer"], registry=r)
        self.message_signatures = Histogram("custody_signer_message_signature_seconds", "signing (op=sign) or checking "
                                            "(op=verify) one envelope, echo or piece of evidence", ["op"],
                                            buckets=(0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01), registry=r)
        self.conflicts = Gauge("custody_signer_peer_conflict", "1 while this coordinator keeps two peers out of one quorum "
                               "(an accusation nobody could prove)", ["peer_a", "peer_b"], registry=r)
        self.blame_alerts = Counter("custody_signer_blame_alerts_total", "blame events to look at: conflict (a new pair), "
                                    "conflict_unavoidable (no quorum without one), false_accusation", ["kind"], registry=r)

    def observe_signature(self, op: str, seconds: float) -> None:
        assert op in ("sign", "verify"), op
        self.message_signatures.labels(op).observe(seconds)

    def peer_label(self, name: str) -> str:
        return name if name in self.peers or name == "none" else "unknown"

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(address: str, metrics: Metrics, health) -> ThreadingHTTPServer:
    """GET /metrics (Prometheus text) and GET /health (JSON from `health()`), on a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/metrics":
                body, ctype, code = metrics.render(), "text/plain; version=0.0.4", 200
            elif self.path == "/health":
                h = health()
                body, ctype, code = json.dumps(h).encode(), "application/json", 200 if h.get("ready") else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # access logs are noise here
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
