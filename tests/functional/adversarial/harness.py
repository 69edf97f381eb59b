"""Harnesses for attacks on the signer cluster, over real `custody signer` processes.

- RogueNode: the node's own TLS certificate and request-signing key in an attacker's hands. It
  builds any request body it likes, signs it with the node's key (or another) and sends it to
  any peer directly, with none of the node's own checks (mpc/client.py is not in the path).
- A rogue peer: a real signer process running the test-only RogueParticipant (rogue.py), with
  faults chosen per test (LocalCluster(rogues=...), cluster.set_faults), plus `peer_stub`, a
  pinned peer's own mTLS channel, to send it any RPC a peer may send (Join, Deliver, Abort...).
"""

from __future__ import annotations

import pathlib

from nacl.signing import SigningKey

from mpc.proto import signer_pb2 as pb
from mpc.proto import signer_pb2_grpc as pb_grpc
from mpc.transport import mesh, tls
from mpc.wire import requests as rq


def _address(cluster, name: str) -> str:
    return next(p["address"] for p in cluster.info["peers"] if p["name"] == name)


def peer_stub(cluster, as_peer: str, to: str, identity: tls.Identity | None = None) -> pb_grpc.SignerStub:
    """A channel from `as_peer` (its real, pinned certificate unless `identity`) to `to`."""
    d = cluster.dir / as_peer
    me = identity or tls.Identity(as_peer, (d / "tls.crt").read_bytes(), (d / "tls.key").read_bytes())
    return pb_grpc.SignerStub(mesh.open_channel(me, _address(cluster, to), to, (cluster.dir / to / "tls.crt").read_bytes()))


def recorded(cluster, sender_peer: str, to: str) -> list[pb.Envelope]:
    """Envelopes a rogue peer with {"record_envelopes": true} sent to `to`, oldest first."""
    files = sorted((cluster.dir / sender_peer / "envelopes").glob(f"*-{sender_peer}:*-{to}-*.env"), key=lambda f: f.stat().st_mtime_ns)
    assert files, f"no recorded envelopes from {sender_peer} to {to}"
    return [pb.Envelope.FromString(f.read_bytes()) for f in files]


class RogueNode:
    def __init__(self, cluster):
        node = cluster.info["node"]
        self.cluster = cluster
        self.identity = tls.Identity("node", pathlib.Path(node["tls_cert"]).read_bytes(), pathlib.Path(node["tls_key"]).read_bytes())
        self.key = SigningKey(bytes.fromhex(pathlib.Path(node["signing_key"]).read_text().strip()))
        self._stubs: dict[str, pb_grpc.SignerStub] = {}

    def stub(self, peer: str) -> pb_grpc.SignerStub:
        if peer not in self._stubs:
            cert = (self.cluster.dir / peer / "tls.crt").read_bytes()
            self._stubs[peer] = pb_grpc.SignerStub(mesh.open_channel(self.identity, _address(self.cluster, peer), peer, cert))
        return self._stubs[peer]

    def signed(self, body: dict, key: SigningKey | None = None) -> pb.SignedRequest:
        raw, sig = rq.sign_body(body, key or self.key)
        return pb.SignedRequest(request=raw, node_signature=sig)

    def call(self, peer: str, method: str, body: dict, key: SigningKey | None = None, timeout_s: float = 120) -> pb.CeremonyReply:
        """`method` (Sign, Keygen, Reshare) on `peer` as its coordinator, with a body of our choosing."""
        return getattr(self.stub(peer), method)(self.signed(body, key), timeout=timeout_s)

    def sign(self, peer: str, body: dict, **kw) -> pb.CeremonyReply:
        return self.call(peer, "Sign", body, **kw)
