"""Outgoing side of the mesh: one mTLS channel per peer, each trusting only that peer's pinned
certificate, every call with an explicit deadline."""

from __future__ import annotations

import threading

import grpc

from mpc.proto import signer_pb2 as pb
from mpc.proto import signer_pb2_grpc as pb_grpc
from mpc.transport import tls
from node import limits

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", limits.CLUSTER_MESSAGE_BYTES_MAX),
    ("grpc.max_receive_message_length", limits.CLUSTER_MESSAGE_BYTES_MAX),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # Fail fast on a dead peer instead of waiting out a long reconnect back-off.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.min_reconnect_backoff_ms", 100),
]


def open_channel(me: tls.Identity, address: str, peer_name: str, peer_cert_pem: bytes) -> grpc.Channel:
    creds = tls.channel_credentials(me, peer_cert_pem)
    # The peer's certificate names it (SAN DNS = peer name); we dial an address but verify the name.
    options = CHANNEL_OPTIONS + [("grpc.ssl_target_name_override", peer_name), ("grpc.default_authority", peer_name)]
    return grpc.secure_channel(address, creds, options=options)


class Mesh:
    def __init__(self, me: tls.Identity, peers: dict[str, tuple[str, bytes]]):
        """peers: name -> (address, pinned cert PEM)."""
        self.me = me
        self.peers = dict(peers)
        self._lock = threading.Lock()
        self._stubs: dict[str, pb_grpc.SignerStub] = {}
        self._channels: list[grpc.Channel] = []
        self._channel_of: dict[str, grpc.Channel] = {}

    def stub(self, name: str) -> pb_grpc.SignerStub:
        with self._lock:
            s = self._stubs.get(name)
            if s is None:
                address, cert = self.peers[name]
                ch = open_channel(self.me, address, name, cert)
                self._channels.append(ch)
                self._channel_of[name] = ch
                s = self._stubs[name] = pb_grpc.SignerStub(ch)
            return s

    def probe(self, names, timeout_ms: int = limits.CLUSTER_PROBE_TIMEOUT_MS) -> dict[str, bool]:
        """Health of each named peer, probed in parallel."""
        # wait_for_ready: a channel still backing off from a restart gets the whole deadline.
        futs = {n: self.stub(n).Health.future(pb.HealthRequest(), timeout=timeout_ms / 1000, wait_for_ready=True) for n in names}
        out = {}
        for n, f in futs.items():
            try:
                r = f.result()
                out[n] = bool(r.ready) and r.peer == n
            except grpc.RpcError:
                out[n] = False
        return out

    def unreachable(self, names, timeout_ms: int = limits.CLUSTER_PROBE_TIMEOUT_MS) -> list[str]:
        """Peers whose connection is refused or broken (UNAVAILABLE): dead, not merely busy. A
        peer slow to answer while tss-lib computes is left to the round deadline."""
        futs = {n: self.stub(n).Health.future(pb.HealthRequest(), timeout=timeout_ms / 1000) for n in names}
        dead = []
        for n, f in futs.items():
            try:
                f.result()
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    dead.append(n)
        return dead

    def connect(self, names, timeout_s: float) -> list[str]:
        """Opens (or checks) the channels to `names` and waits until they are ready; returns
        those that are not. A session warms its channels this way before it starts, so that a
        slow first handshake is never mistaken for a dead peer mid-session."""
        futs = {}
        for n in names:
            self.stub(n)
            ch = self._channel_of[n]
            futs[n] = grpc.channel_ready_future(ch)
        bad = []
        for n, f in futs.items():
            try:
                f.result(timeout=timeout_s)
            except grpc.FutureTimeoutError:
                bad.append(n)
        return bad

    def close(self) -> None:
        with self._lock:
            for ch in self._channels:
                ch.close()
            self._channels.clear()
            self._stubs.clear()
            self._channel_of.clear()

