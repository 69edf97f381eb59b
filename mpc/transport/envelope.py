"""Envelope checks and the broadcast echo book: pure functions over plain data.

Every tss message travels in an Envelope binding session id, protocol, round, sender, recipients
and payload hash. The receiver refuses it (a reason, never an exception) unless:
  1. the sender party belongs to the mTLS-authenticated peer,
  2. the session is one this peer is running now (a replay from another session, or of a finished
     one, names a session that is unknown or closed here),
  3. protocol, sender and recipients belong to that session, and a recipient is hosted here,
  4. the payload hashes to payload_hash, and the round is in range,
  5. it is not a copy of a message already received.
Broadcasts are echo-checked: each peer tells the other recipients the hash of every broadcast it
got; before a session's result is released, every echo must agree, or the sender is named.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from mpc.wire.parties import party_peer

ROUNDS_MAX = {"keygen": 16, "sign": 16, "reshare": 16}
PROTOCOLS = tuple(ROUNDS_MAX)


def payload_hash(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


@dataclass
class SessionView:
    """What the receiver knows about a session to check an envelope against it."""

    session_id: str
    protocol: str
    parties: frozenset[str]  # every party id of the session (both committees for a reshare)
    local_parties: frozenset[str]  # the ones hosted by this peer
    seen: set = field(default_factory=set)


def check_envelope(env, authenticated_peer: str | None, view: SessionView | None, finished: bool = False) -> str | None:
    """None when the envelope may be delivered; otherwise the refusal reason (precedence order)."""
    if authenticated_peer is None:
        return "peer_not_authenticated"
    if party_peer(env.sender) != authenticated_peer:
        return "sender_not_authenticated_peer"
    if view is None:
        return "session_finished" if finished else "unknown_session"
    if env.session_id != view.session_id:
        return "unknown_session"
    if env.protocol != view.protocol:
        return "protocol_mismatch"
    if env.sender not in view.parties:
        return "sender_not_in_session"
    if not env.recipients or any(r not in view.parties for r in env.recipients):
        return "recipient_not_in_session"
    if env.sender in env.recipients:
        return "recipient_not_in_session"
    if not any(r in view.local_parties for r in env.recipients):
        return "recipient_not_here"
    if len(env.payload_hash) != 32 or payload_hash(env.payload) != env.payload_hash:
        return "payload_hash_mismatch"
    if not 0 <= env.round <= ROUNDS_MAX[view.protocol]:
        return "round_out_of_range"
    key = (env.sender, env.round, env.is_broadcast, tuple(env.recipients), bytes(env.payload_hash))
    if key in view.seen:
        return "duplicate_message"
    view.seen.add(key)
    return None


class EchoBook:
    """Per session: hashes of the broadcasts this peer received, and what the others echoed.

    `record_own` returns the echo to send (to the other recipients' peers). `verdict` is None
    while echoes are missing, ("ok", ()) when all agree, ("equivocation", culprits) on a mismatch,
    naming the broadcast's sender.

    One sender may send several broadcasts in one round to different recipients (a reshare's
    new party answers the old committee and the new one apart); a peer hosting parties of both
    gets them all. Each hash is expected back only from the peers it was addressed to, so a
    peer that got one of them is not waited for on the other.
    """

    def __init__(self, my_peer: str):
        self.my_peer = my_peer
        self._lock = threading.Lock()
        # (sender, round) -> hash -> the other peers that message was addressed to
        self._own: dict[tuple[str, int], dict[bytes, set[str]]] = {}
        self._echoes: dict[tuple[str, int], dict[str, set[bytes]]] = {}

    def record_own(self, sender: str, round_: int, h: bytes, recipients) -> set[str]:
        """Returns the peers to send our echo of this broadcast to."""
        others = {party_peer(r) for r in recipients} - {self.my_peer, party_peer(sender)}
        with self._lock:
            self._own.setdefault((sender, round_), {}).setdefault(bytes(h), set()).update(others)
        return others

    def record_echo(self, echoer: str, sender: str, round_: int, h: bytes) -> None:
        with self._lock:
            self._echoes.setdefault((sender, round_), {}).setdefault(echoer, set()).add(bytes(h))

    def _owed_locked(self):
        """(key, echoer, the hashes it owes us and has not echoed) for every gap."""
        for key, own in self._own.items():
            got = self._echoes.get(key, {})
            owed: dict[str, set[bytes]] = {}
            for h, peers in own.items():
                for p in peers:
                    owed.setdefault(p, set()).add(h)
            for p, hashes in owed.items():
                gap = hashes - got.get(p, set())
                if gap:
                    yield key, p, gap

    def missing(self) -> set[str]:
        with self._lock:
            return {p for _, p, _ in self._owed_locked()}

    def verdict(self):
        with self._lock:
            culprits = set()
            for key, own in self._own.items():
                addressed = set().union(*own.values())  # an echo counts from these peers only
                for p, theirs in self._echoes.get(key, {}).items():
                    if p in addressed and theirs - own.keys():
                        culprits.add(party_peer(key[0]))  # it sent someone else other bytes
            # An echo about a broadcast we never got is resolved by the round deadline (we
            # wait for that sender), not here.
            if culprits:
                return ("equivocation", tuple(sorted(culprits)))
            complete = next(self._owed_locked(), None) is None
            return ("ok", ()) if complete else None
