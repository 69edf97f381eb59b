"""Envelope checks, message signatures and the broadcast echo book.

Every tss message travels in an Envelope binding session id, protocol, round, sender, recipients,
kind and payload hash, signed by the sender peer with the key of its pinned TLS certificate
(P-256; a domain tag keeps these signatures apart from the TLS handshake's). The receiver refuses it (a reason, never an exception) unless:
  1. the sender party belongs to the mTLS-authenticated peer,
  2. the session is one this peer is running now (a replay from another session, or of a finished
     one, names a session that is unknown or closed here),
  3. protocol, sender and recipients belong to that session, and a recipient is hosted here,
  4. the payload hashes to payload_hash and is of its kind, and the round is in range,
  5. it is signed by the sender peer's pinned key (`signature`, over the header),
  6. a broadcast goes to a whole committee (so no two recipients can be told apart unseen),
  7. it is not a copy of a message already received, and its sender is within its bound.
Broadcasts are echo-checked: each peer sends the other recipients the signed header of every
broadcast it got, signed again by itself; before a session's result is released, every echo
must agree. Blame needs proof anyone can check (`check_evidence`): two headers of one broadcast
slot, both signed by their sender, with different hashes, prove that sender equivocated; an
echo, signed by its echoer, of a header its sender did not sign proves the echoer lied. An echo
that merely disagrees without a sender's signature never names the sender.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from mpc.wire.parties import generation_of, party_peer
from node import limits

ROUNDS_MAX = {"keygen": 16, "sign": 16, "reshare": 16}
PROTOCOLS = tuple(ROUNDS_MAX)


def payload_hash(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


# Domain tags: a signature over one kind of message can never be read as another (nor as the
# TLS handshake signatures the same key makes, which carry their own context strings).
ENVELOPE_DOMAIN = b"custody-signer/envelope/v1\0"
ECHO_DOMAIN = b"custody-signer/echo/v1\0"
SIGNATURE_BYTES_MAX = 80  # a DER ECDSA P-256 signature is at most 72 bytes
EVIDENCE_KINDS = ("equivocation", "forged_echo")


def _fields(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(x)) + x for x in parts)


def message_kind(payload: bytes) -> str:
    """What kind of message a payload is: its engine tag (mpc/engine.py TAG_*) and, for
    tss-lib's bytes (tag 1, a protobuf Any), its type. A sender may send one broadcast of each
    kind per round (keygen's round 1 carries tss-lib's message and the chain-code commit)."""
    if not payload:
        return ""
    if payload[0] == 0x01 and len(payload) > 3 and payload[1] == 0x0A and payload[2] < 0x80:
        return "tss:" + payload[3:3 + payload[2]].decode("ascii", "replace")
    return f"tag:{payload[0]}"


def envelope_digest(env) -> bytes:
    """What the sender signs: every header field, payload bound by payload_hash."""
    return hashlib.sha256(ENVELOPE_DOMAIN + _fields(
        env.session_id.encode(), env.protocol.encode(), struct.pack(">I", env.round), env.sender.encode(), env.kind.encode(),
        _fields(*(r.encode() for r in sorted(env.recipients))), bytes(env.payload_hash),
        b"\1" if env.is_broadcast else b"\0")).digest()


def echo_digest(e) -> bytes:
    """What the echoer signs: its name, the session, and the header it got with its signature."""
    return hashlib.sha256(ECHO_DOMAIN + _fields(
        e.session_id.encode(), e.echoer.encode(), envelope_digest(e.broadcast), bytes(e.broadcast.signature))).digest()


def header_of(env):
    """The envelope without its payload: what an echo or a piece of evidence carries."""
    h = type(env)()
    h.CopyFrom(env)
    h.payload = b""
    return h


def slot(env) -> tuple:
    """One broadcast slot: a sender sends one message per slot; two signed ones differ = proof."""
    return (env.session_id, env.sender, env.round, env.kind, tuple(sorted(env.recipients)))


class MessageSigner:
    """Signs with this peer's TLS private key (P-256), the key its pinned certificate names."""

    def __init__(self, key_pem: bytes, observe=None):
        self._key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(self._key, ec.EllipticCurvePrivateKey), "peer keys are P-256"
        self._observe = observe  # observe("sign", seconds): the signatures' cost, for metrics

    def __repr__(self) -> str:
        return "MessageSigner(<key>)"

    def sign(self, digest: bytes) -> bytes:
        t0 = time.perf_counter()
        sig = self._key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        if self._observe is not None:
            self._observe("sign", time.perf_counter() - t0)
        return sig


class PeerKeys:
    """name -> the public key of its pinned certificate; verifies their signatures."""

    def __init__(self, certs: dict[str, bytes], observe=None):
        self._keys = {n: x509.load_pem_x509_certificate(pem).public_key() for n, pem in certs.items()}
        self._observe = observe  # observe("verify", seconds)

    def verify(self, peer: str, digest: bytes, signature: bytes) -> bool:
        key = self._keys.get(peer)
        if key is None or not signature or len(signature) > SIGNATURE_BYTES_MAX:
            return False
        t0 = time.perf_counter()
        try:
            key.verify(bytes(signature), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            return True
        except (InvalidSignature, ValueError):
            return False
        finally:
            if self._observe is not None:
                self._observe("verify", time.perf_counter() - t0)

    def envelope_signed(self, env) -> bool:
        return self.verify(party_peer(env.sender), envelope_digest(env), env.signature)

    def echo_signed(self, e) -> bool:
        return self.verify(e.echoer, echo_digest(e), e.signature)


@dataclass
class SessionView:
    """What the receiver knows about a session to check an envelope against it."""

    session_id: str
    protocol: str
    parties: frozenset[str]  # every party id of the session (both committees for a reshare)
    local_parties: frozenset[str]  # the ones hosted by this peer
    seen: set = field(default_factory=set)
    per_peer: dict = field(default_factory=dict)  # sender peer -> envelopes accepted from it

    def broadcast_sets(self, sender: str) -> tuple[frozenset, ...]:
        """The recipient sets a broadcast of `sender` may have: the whole session, or (reshare)
        one committee, always without the sender itself."""
        sets = [self.parties]
        if self.protocol == "reshare":
            gens = sorted({generation_of(x) for x in self.parties})
            sets += [frozenset(x for x in self.parties if generation_of(x) == g) for g in gens]
        return tuple(s - {sender} for s in sets)


def check_envelope(env, authenticated_peer: str | None, view: SessionView | None, finished: bool = False,
                   keys: PeerKeys | None = None) -> str | None:
    """None when the envelope may be delivered; otherwise the refusal reason (precedence order).
    `keys` None skips the signature check (unit tests of the other rows only)."""
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
    if env.kind != message_kind(env.payload):
        return "kind_mismatch"
    if keys is not None and not keys.envelope_signed(env):
        return "signature_invalid"
    if not 0 <= env.round <= ROUNDS_MAX[view.protocol]:
        return "round_out_of_range"
    if env.is_broadcast and frozenset(env.recipients) not in view.broadcast_sets(env.sender):
        return "broadcast_not_to_a_committee"
    key = (env.sender, env.round, env.is_broadcast, tuple(env.recipients), bytes(env.payload_hash))
    if key in view.seen:
        return "duplicate_message"
    peer = party_peer(env.sender)
    if view.per_peer.get(peer, 0) >= limits.CLUSTER_ENVELOPES_PER_PEER_SESSION_MAX:
        return "envelope_limit_reached"
    view.per_peer[peer] = view.per_peer.get(peer, 0) + 1
    view.seen.add(key)
    return None


def check_evidence(ev, keys: PeerKeys, session_ids) -> str | None:
    """The peer `ev` proves misbehaved (its `culprit`), or None when it proves nothing. Checked
    from the pinned keys alone: the coordinator and every peer reach the same answer."""
    if ev.kind == "equivocation":
        if len(ev.envelopes) != 2:
            return None
        a, b = ev.envelopes
        if not (a.is_broadcast and b.is_broadcast and slot(a) == slot(b) and a.protocol == b.protocol
                and a.session_id in session_ids and bytes(a.payload_hash) != bytes(b.payload_hash)):
            return None
        culprit = party_peer(a.sender)
        if culprit != ev.culprit or not (keys.envelope_signed(a) and keys.envelope_signed(b)):
            return None
        return culprit
    if ev.kind == "forged_echo":
        e = ev.echo
        if e.echoer != ev.culprit or e.session_id not in session_ids or e.broadcast.session_id != e.session_id:
            return None
        if not keys.echo_signed(e) or keys.envelope_signed(e.broadcast):
            return None
        return e.echoer
    return None


class EchoBook:
    """Per session: the signed headers of the broadcasts this peer received, and the others'
    signed echoes of theirs.

    `record_own` returns the peers to echo a header to. `verdict` is None while echoes are
    missing, ("ok", ()) when all agree, ("equivocation", senders) when a sender signed two
    different headers for one slot, ("forged_echo", echoers) when an echoer sent a header its
    sender did not sign. `evidence()` is the proof of each (pb.Evidence), for the Abort.

    One sender may send several broadcasts in one round to different committees (a reshare's
    new party answers the old committee and the new one apart): each is its own slot, with its
    own recipients, expected back only from the peers it was addressed to.
    """

    def __init__(self, my_peer: str, evidence_class=None):
        self.my_peer = my_peer
        self._lock = threading.Lock()
        self._evidence_class = evidence_class
        # slot -> hash -> the signed header; slot -> the other peers it was addressed to
        self._own: dict[tuple, dict[bytes, object]] = {}
        self._addressed: dict[tuple, set[str]] = {}
        # slot -> echoer -> hash -> its signed echo
        self._echoes: dict[tuple, dict[str, dict[bytes, object]]] = {}
        self._held: dict[str, int] = {}  # echoer -> echoes held from it
        self._forged: dict[str, object] = {}  # echoer -> one signed echo of an unsigned header

    def record_own(self, header) -> set[str]:
        """`header`: a received broadcast, already checked (signature included). Returns the
        peers to send our echo of it to."""
        others = {party_peer(r) for r in header.recipients} - {self.my_peer, party_peer(header.sender)}
        key = slot(header)
        with self._lock:
            self._own.setdefault(key, {}).setdefault(bytes(header.payload_hash), header_of(header))
            self._addressed.setdefault(key, set()).update(others)
        return others

    def have(self, header) -> bool:
        """Whether `header`, its signature included, is one we received and checked ourselves
        (an echo of it then needs no second check of the sender's signature)."""
        with self._lock:
            own = self._own.get(slot(header), {}).get(bytes(header.payload_hash))
            return own is not None and own.protocol == header.protocol and bytes(own.signature) == bytes(header.signature)

    def record_echo(self, e, signed_by_sender: bool) -> str | None:
        """`e`: an echo whose echoer signature and session were checked. None when kept; else
        the refusal reason. An echo of a header its sender did not sign is the echoer's lie."""
        with self._lock:
            if self._held.get(e.echoer, 0) >= limits.CLUSTER_ECHOES_PER_PEER_SESSION_MAX:
                return "echo_limit_reached"
            self._held[e.echoer] = self._held.get(e.echoer, 0) + 1
            if not signed_by_sender:
                self._forged.setdefault(e.echoer, e)
                return None
            hashes_ = self._echoes.setdefault(slot(e.broadcast), {}).setdefault(e.echoer, {})
            hashes_.setdefault(bytes(e.broadcast.payload_hash), e)
        return None

    def _owed_locked(self):
        """(slot, echoer) for every echo still owed to us."""
        for key, peers in self._addressed.items():
            got = self._echoes.get(key, {})
            for p in peers:
                if not got.get(p):
                    yield key, p

    def missing(self) -> set[str]:
        with self._lock:
            return {p for _, p in self._owed_locked()}

    def _conflicts_locked(self):
        """(sender peer, header a, header b): two signed headers of one slot, different hashes."""
        for key, own in self._own.items():
            mine = next(iter(own.values()))
            if len(own) > 1:
                other = list(own.values())[1]
                yield party_peer(key[1]), mine, other
                continue
            for theirs in self._echoes.get(key, {}).values():
                for h, e in theirs.items():
                    if h not in own:
                        yield party_peer(key[1]), mine, e.broadcast
                        break

    def verdict(self):
        with self._lock:
            if self._forged:
                return ("forged_echo", tuple(sorted(self._forged)))
            senders = sorted({s for s, _, _ in self._conflicts_locked()})
            if senders:
                return ("equivocation", tuple(senders))
            # An echo about a broadcast we never got waits for our own copy; the round deadline
            # ends a session whose copy never comes.
            complete = next(self._owed_locked(), None) is None
            return ("ok", ()) if complete else None

    def evidence(self) -> list:
        """pb.Evidence for every proven culprit (needs `evidence_class`, the pb.Evidence type)."""
        assert self._evidence_class is not None
        out, named = [], set()
        with self._lock:
            for echoer, e in sorted(self._forged.items()):
                ev = self._evidence_class(kind="forged_echo", culprit=echoer)
                ev.echo.CopyFrom(e)
                out.append(ev)
            for sender, a, b in self._conflicts_locked():
                if sender in named:
                    continue
                named.add(sender)
                ev = self._evidence_class(kind="equivocation", culprit=sender)
                ev.envelopes.add().CopyFrom(a)
                ev.envelopes.add().CopyFrom(b)
                out.append(ev)
        return out
