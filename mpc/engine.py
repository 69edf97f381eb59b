"""Threshold ECDSA sessions over tss-lib: keygen, signing (optionally for a BIP32 child key) and
resharing, with bytes in and bytes out.

A session is one party's side of one ceremony. The caller (the signer cluster, or a test that
hosts every party in one process) moves messages:

    s = sign_session("signer-1", signers, share, digest, session_id)
    s.start()
    while True:
        ev = s.next_event(timeout_s=1.0)         # Outgoing | Done | None; raises MpcError
        if isinstance(ev, Outgoing): send ev.wire to ev.recipients (None = every other party)
        if isinstance(ev, Done): break
    ... and for each message that arrives: s.deliver(wire, sender, is_broadcast)

The sender and the broadcast flag travel beside the bytes (tss-lib does not put them in the
wire bytes); the transport authenticates the sender. Every wire message starts with one tag
byte: TAG_TSS (tss-lib's own bytes follow) or, in keygen only, the chain-code commit/reveal.

Party ids are strings. tss-lib orders parties by a positive integer "key", which is also the
x-coordinate of the party's Shamir share; `PartyId.of(id)` derives it from the id as
SHA-256("custody-node/party-key/v1" || id) mod (n - 1) + 1 (n the secp256k1 order), so every
peer computes the same key from the same id.

Chain code (HD keys): tss-lib's keygen makes no chain code, so the keygen session agrees one by
commit-then-reveal, carried as two extra broadcast messages of the same session:
  1. at start, party i draws r_i (32 random bytes) and broadcasts
     C_i = SHA-256("custody-node/chaincode-commit/v1" || session_id || len(id_i) || id_i || r_i);
  2. once it holds every other party's commitment, it broadcasts r_i;
  3. each party checks every reveal against its commitment (a mismatch aborts the session
     naming the party) and sets chain_code = SHA-256("custody-node/chaincode/v1" ||
     session_id || for each party in tss-lib's order: len(id) || id || r).
No party learns another's r before committing to its own, so no single party chooses the
chain code (the last to reveal can only abort, which names it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import struct
import threading
from typing import Sequence

import coincurve

from mpc import _native
from mpc.preparams import PreParams
from node import limits
from node.log import Secret, get

log = get("mpc.engine")

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HARDENED = 0x80000000

TAG_TSS = 0x01
TAG_CHAINCODE_COMMIT = 0x02
TAG_CHAINCODE_REVEAL = 0x03

KEYSHARE_FORMAT = "custody-node/keyshare/v1"
_KEYSHARE_MAGIC = b"CNKS\x01"


# ---------------------------------------------------------------- values crossing the API


class InvalidSessionRequest(ValueError):
    """A session could not be created from these arguments; nothing was started.
    `code` names the reason as a sentence (`threshold_out_of_range`)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class MpcError(Exception):
    """A session failed or a message was rejected: tss-lib's task and round, and the parties
    to blame (`culprits`, possibly empty when nobody can be named)."""

    def __init__(self, task: str, round: int, culprits: Sequence[str], message: str, party: str = ""):
        self.task = task
        self.round = int(round)
        self.culprits = tuple(culprits)
        self.message = message
        self.party = party
        super().__init__(str(self))

    def __str__(self) -> str:
        who = f", culprits [{', '.join(self.culprits)}]" if self.culprits else ""
        return f"task {self.task}, party {self.party}, round {self.round}{who}: {self.message}"

    @classmethod
    def _from_native(cls, e: _native.NativeError, party: str) -> "MpcError":
        return cls(e.task, e.round, e.culprits, e.message, party)


@dataclasses.dataclass(frozen=True, order=True)
class PartyId:
    id: str
    key: int  # tss-lib sort key = the party's Shamir x-coordinate; positive, below the curve order

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id or len(self.id) > 128:
            raise InvalidSessionRequest("party_id_must_be_1_to_128_chars", repr(self.id))
        if not isinstance(self.key, int) or not 0 < self.key < SECP256K1_N:
            raise InvalidSessionRequest("party_key_out_of_range", self.id)

    @classmethod
    def of(cls, id: str) -> "PartyId":
        digest = hashlib.sha256(b"custody-node/party-key/v1" + id.encode()).digest()
        return cls(id, int.from_bytes(digest, "big") % (SECP256K1_N - 1) + 1)

    def _conf(self) -> dict:
        return {"id": self.id, "key": str(self.key)}


@dataclasses.dataclass(frozen=True)
class Outgoing:
    wire: bytes
    round: int
    is_broadcast: bool
    recipients: tuple[str, ...] | None  # None = every other party of the session
    to_old_committee: bool = False  # resharing routing
    to_new_committee: bool = False

    def __repr__(self) -> str:
        return (
            f"Outgoing(round={self.round}, broadcast={self.is_broadcast}, recipients={self.recipients}, "
            f"old={self.to_old_committee}, new={self.to_new_committee}, {len(self.wire)} bytes)"
        )


@dataclasses.dataclass(frozen=True)
class Done:
    result: "KeyShare | Signature | None"  # None: an old-committee party after resharing


@dataclasses.dataclass(frozen=True)
class Signature:
    r: int
    s: int
    recovery_id: int
    public_key: bytes  # 33-byte compressed key it verifies under (the child key for HD)

    def compact(self) -> bytes:
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")

    def der(self) -> bytes:
        def integer(x: int) -> bytes:
            b = x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")
            if b[0] & 0x80:
                b = b"\x00" + b
            return b"\x02" + bytes([len(b)]) + b

        body = integer(self.r) + integer(self.s)
        return b"\x30" + bytes([len(body)]) + body


def check_signature(sig: Signature, digest: bytes) -> None:
    """Checks twice at the boundary: low-S, valid under the public key, right recovery id.
    Raises ValueError; a signature is never released without passing this."""
    if not (0 < sig.r < SECP256K1_N and 0 < sig.s <= SECP256K1_N // 2):
        raise ValueError("signature_not_low_s_or_out_of_range")
    if not 0 <= sig.recovery_id <= 3:
        raise ValueError("recovery_id_out_of_range")
    pub = coincurve.PublicKey(sig.public_key)
    if not pub.verify(sig.der(), digest, hasher=None):
        raise ValueError("signature_does_not_verify")
    recovered = coincurve.PublicKey.from_signature_and_message(
        sig.compact() + bytes([sig.recovery_id]), digest, hasher=None
    )
    if recovered.format(compressed=True) != sig.public_key:
        raise ValueError("recovery_id_does_not_recover_the_key")


def derive_child_public_key(public_key: bytes, chain_code: bytes, path: Sequence[int]) -> tuple[bytes, bytes]:
    """Non-hardened BIP32 public derivation (CKDpub): returns (child key, child chain code)."""
    key, cc = coincurve.PublicKey(public_key), chain_code
    for index in path:
        if not 0 <= index < HARDENED:
            raise InvalidSessionRequest("hd_index_must_be_non_hardened", str(index))
        mac = hmac.new(cc, key.format(compressed=True) + index.to_bytes(4, "big"), hashlib.sha512).digest()
        il, cc = mac[:32], mac[32:]
        if int.from_bytes(il, "big") >= SECP256K1_N:
            raise InvalidSessionRequest("hd_index_invalid_choose_the_next", str(index))
        key = key.add(il)  # K + IL*G; coincurve refuses the point at infinity
    return key.format(compressed=True), cc


class KeyShare:
    """One party's share of a threshold key. Secrets (tss-lib's Xi, Paillier key) stay inside
    `_key_data` and never print. `to_bytes()` is plaintext: seal it (mpc.sealing) at rest."""

    __slots__ = ("party", "committee", "threshold", "public_key", "chain_code", "_key_data")

    def __init__(self, party: str, committee: Sequence[PartyId], threshold: int, public_key: bytes,
                 chain_code: bytes, key_data: bytes):
        assert len(public_key) == 33 and len(chain_code) == 32
        self.party = party
        self.committee = tuple(sorted(committee, key=lambda p: p.key))
        self.threshold = threshold
        self.public_key = bytes(public_key)
        self.chain_code = bytes(chain_code)
        self._key_data = Secret(bytes(key_data))

    def __repr__(self) -> str:
        return (
            f"KeyShare(party={self.party!r}, committee={[p.id for p in self.committee]}, threshold={self.threshold}, "
            f"public_key={self.public_key.hex()}, chain_code=<redacted>, key_data=<redacted>)"
        )

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a KeyShare is not picklable: use to_bytes() and seal it")

    def child_public_key(self, path: Sequence[int]) -> bytes:
        return derive_child_public_key(self.public_key, self.chain_code, path)[0]

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "format": KEYSHARE_FORMAT, "party": self.party,
            "committee": [p._conf() for p in self.committee], "threshold": self.threshold,
            "public_key": self.public_key.hex(), "chain_code": self.chain_code.hex(),
        }, sort_keys=True).encode()
        return _KEYSHARE_MAGIC + struct.pack(">I", len(header)) + header + self._key_data.reveal()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "KeyShare":
        try:
            if not raw.startswith(_KEYSHARE_MAGIC):
                raise ValueError("not a key share")
            (hlen,) = struct.unpack_from(">I", raw, len(_KEYSHARE_MAGIC))
            start = len(_KEYSHARE_MAGIC) + 4
            h = json.loads(raw[start:start + hlen])
            if h.get("format") != KEYSHARE_FORMAT:
                raise ValueError(f"unknown key share format {h.get('format')!r}")
            committee = [PartyId(p["id"], int(p["key"])) for p in h["committee"]]
            key_data = raw[start + hlen:]
            json.loads(key_data)  # tss-lib's save data: must at least be JSON
            return cls(h["party"], committee, int(h["threshold"]), bytes.fromhex(h["public_key"]),
                       bytes.fromhex(h["chain_code"]), key_data)
        except (ValueError, KeyError, TypeError, struct.error, AssertionError) as e:
            raise InvalidSessionRequest("key_share_does_not_parse", str(e)) from None


# ---------------------------------------------------------------- sessions


def _check_session_id(session_id: bytes) -> None:
    if not isinstance(session_id, bytes) or not (
        limits.MPC_SESSION_ID_BYTES_MIN <= len(session_id) <= limits.MPC_SESSION_ID_BYTES_MAX
    ):
        raise InvalidSessionRequest(
            "session_id_length_out_of_range",
            f"{limits.MPC_SESSION_ID_BYTES_MIN}..{limits.MPC_SESSION_ID_BYTES_MAX} bytes",
        )


def _check_parties(parties: Sequence[PartyId], what: str) -> None:
    if not 2 <= len(parties) <= limits.MPC_PARTIES_MAX:
        raise InvalidSessionRequest(f"{what}_count_out_of_range", f"2..{limits.MPC_PARTIES_MAX}")
    if len({p.id for p in parties}) != len(parties) or len({p.key for p in parties}) != len(parties):
        raise InvalidSessionRequest(f"{what}_must_be_distinct")


class Session:
    """One party's side of one ceremony. Not thread-safe for concurrent next_event callers;
    deliver may be called from another thread than next_event."""

    def __init__(self, task: str, self_id: str, members: Sequence[str], config: dict):
        self.task = task
        self.self_id = self_id
        self._members = frozenset(members)
        self._lock = threading.Lock()
        self._pending: list = []  # Python-side events (keygen chain-code messages, held Done)
        self._failed: MpcError | None = None
        self._finished = False
        self._started = False
        self._handle = 0
        try:
            self._handle = _native.session_new(task, json.dumps(config).encode())
        except _native.NativeError as e:
            raise InvalidSessionRequest("rejected_by_tss_lib", e.message) from None

    def __repr__(self) -> str:
        state = "failed" if self._failed else "done" if self._finished else "running" if self._started else "new"
        return f"Session(task={self.task}, party={self.self_id}, state={state})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        h, self._handle = self._handle, 0
        if h:
            _native.session_free(h)

    def _require_open(self) -> None:
        if not self._handle:
            raise MpcError(self.task, 0, (), "session is closed", self.self_id)

    def _fail(self, err: MpcError) -> MpcError:
        with self._lock:
            first = self._failed is None
            if first:
                self._failed = err
            err = self._failed
        if first:
            log.warning("session_failed", task=err.task, party=self.self_id, round=err.round,
                        culprits=list(err.culprits), reason=err.message)
        return err

    def start(self) -> None:
        self._require_open()
        if self._started:
            raise MpcError(self.task, 0, (), "session already started", self.self_id)
        self._started = True
        try:
            _native.session_start(self._handle)
        except _native.NativeError as e:
            raise self._fail(MpcError._from_native(e, self.self_id)) from None
        self._after_start()

    def _after_start(self) -> None:
        pass

    def deliver(self, wire: bytes, sender: str, is_broadcast: bool) -> None:
        """Hands one incoming message to the party and returns at once (the round computes on
        the session's own goroutine). Raises MpcError naming the sender when the message is
        rejected outright (not a member, bytes that do not parse) — that changes nothing. A
        protocol violation found while processing it fails the session: next_event (and any
        later deliver) raises MpcError naming the culprits."""
        self._require_open()
        if self._failed is not None:
            raise self._failed
        if sender not in self._members or sender == self.self_id:
            raise MpcError(self.task, 0, (sender,), f"message from {sender!r}, who is not a member of this session", self.self_id)
        if not isinstance(wire, bytes) or not 1 < len(wire) <= limits.MPC_WIRE_MESSAGE_BYTES_MAX:
            raise MpcError(self.task, 0, (sender,), "message empty or larger than MPC_WIRE_MESSAGE_BYTES_MAX", self.self_id)
        tag, body = wire[0], wire[1:]
        if tag == TAG_TSS:
            try:
                _native.session_deliver(self._handle, body, sender, is_broadcast)
            except _native.NativeError as e:
                raise MpcError._from_native(e, self.self_id) from None
        else:
            self._deliver_extra(tag, body, sender, is_broadcast)

    def _deliver_extra(self, tag: int, body: bytes, sender: str, is_broadcast: bool) -> None:
        raise MpcError(self.task, 0, (sender,), f"unknown message tag {tag:#x}", self.self_id)

    def next_event(self, timeout_s: float) -> "Outgoing | Done | None":
        """The next outgoing message or the result; None when nothing came before timeout_s.
        Raises MpcError when the session has failed."""
        self._require_open()
        if not 0 <= timeout_s <= limits.MPC_NEXT_EVENT_TIMEOUT_S_MAX:
            raise ValueError("timeout_s out of range (0..MPC_NEXT_EVENT_TIMEOUT_S_MAX)")
        if self._failed is not None:
            raise self._failed
        ev = self._pop_pending()
        if ev is not None:
            return ev
        try:
            kind, header, payload = _native.session_next_event(self._handle, int(timeout_s * 1000))
        except _native.NativeError as e:  # e.g. closed by another thread meanwhile
            raise MpcError._from_native(e, self.self_id) from None
        if kind == _native.EVENT_NONE:
            return self._pop_pending()
        if kind == _native.EVENT_OUTGOING:
            to = header.get("to")
            return Outgoing(
                wire=bytes([TAG_TSS]) + payload, round=int(header["round"]), is_broadcast=bool(header["broadcast"]),
                recipients=tuple(to) if to is not None else None,
                to_old_committee=bool(header.get("to_old")), to_new_committee=bool(header.get("to_new")),
            )
        if kind == _native.EVENT_ERROR:
            raise self._fail(MpcError(header["task"], header["round"], header["culprits"], header["message"], self.self_id))
        assert kind == _native.EVENT_DONE, kind
        try:
            done = self._on_done(header, payload)
        except ValueError as e:
            raise self._fail(MpcError(self.task, 0, (), f"result failed its check: {e}", self.self_id)) from None
        if done is None:  # held until the Python side completes (keygen chain code)
            return self._pop_pending()
        self._finished = True
        return done

    def _pop_pending(self):
        with self._lock:
            if self._pending:
                ev = self._pending.pop(0)
                if isinstance(ev, Done):
                    self._finished = True
                return ev
        return None

    def _on_done(self, header: dict, payload: bytes) -> "Done | None":
        raise NotImplementedError

    def waiting_for(self) -> tuple[str, ...]:
        """The parties this one still waits for in the current round (names stalled peers)."""
        self._require_open()
        if self._finished:
            return ()
        try:
            waiting = _native.session_waiting_for(self._handle)
        except _native.NativeError as e:
            raise MpcError._from_native(e, self.self_id) from None
        return tuple(p for p in waiting if p != self.self_id)


class _KeygenSession(Session):
    def __init__(self, self_id, parties, threshold, preparams, session_id):
        self._parties = tuple(sorted(parties, key=lambda p: p.key))
        self._threshold = threshold
        self._session_id = session_id
        self._r = Secret(secrets.token_bytes(32))
        self._commits: dict[str, bytes] = {}
        self._reveals: dict[str, bytes] = {}
        self._revealed = False
        self._tss_result: tuple[bytes, bytes] | None = None
        super().__init__("keygen", self_id, [p.id for p in parties], {
            "self": self_id, "parties": [p._conf() for p in parties], "threshold": threshold,
            "preparams": json.loads(preparams._reveal()), "session_id": session_id.hex(),
            "event_max": limits.MPC_SESSION_EVENTS_MAX,
        })
        c = self._commitment(self_id, self._r.reveal())
        self._pending.append(Outgoing(bytes([TAG_CHAINCODE_COMMIT]) + c, 1, True, None))

    def _commitment(self, party: str, r: bytes) -> bytes:
        pid = party.encode()
        return hashlib.sha256(
            b"custody-node/chaincode-commit/v1" + self._session_id + struct.pack(">H", len(pid)) + pid + r
        ).digest()

    def _after_start(self) -> None:
        pass  # the commitment is queued at construction, ahead of anything a delivery queues

    def _deliver_extra(self, tag, body, sender, is_broadcast):
        if tag not in (TAG_CHAINCODE_COMMIT, TAG_CHAINCODE_REVEAL) or len(body) != 32 or not is_broadcast:
            raise MpcError(self.task, 0, (sender,), "malformed chain-code message", self.self_id)
        with self._lock:
            if tag == TAG_CHAINCODE_COMMIT:
                if sender in self._commits:
                    if self._commits[sender] == body:
                        return  # a duplicate of the same broadcast changes nothing
                    raise self._fail_locked(MpcError(self.task, 1, (sender,), "two different chain-code commitments", self.self_id))
                self._commits[sender] = body
                if len(self._commits) == len(self._parties) - 1 and not self._revealed:
                    self._revealed = True
                    self._pending.append(Outgoing(bytes([TAG_CHAINCODE_REVEAL]) + self._r.reveal(), 2, True, None))
            elif sender in self._reveals and self._reveals[sender] != body:
                raise self._fail_locked(MpcError(self.task, 2, (sender,), "two different chain-code reveals", self.self_id))
            else:
                # A reveal may overtake its commitment on an unordered transport: it is kept
                # and checked when the commitment arrives.
                self._reveals[sender] = body
            for party, r in self._reveals.items():
                if party in self._commits and self._commitment(party, r) != self._commits[party]:
                    raise self._fail_locked(MpcError(self.task, 2, (party,), "chain-code reveal does not match its commitment", self.self_id))
            self._maybe_finish_locked()

    def _fail_locked(self, err):
        if self._failed is None:
            self._failed = err
        return self._failed

    def _maybe_finish_locked(self):
        if self._tss_result is None or len(self._reveals) != len(self._parties) - 1 or self._failed:
            return None
        if len(self._commits) != len(self._parties) - 1:
            return None
        reveals = dict(self._reveals)
        reveals[self.self_id] = self._r.reveal()
        h = hashlib.sha256(b"custody-node/chaincode/v1" + self._session_id)
        for p in self._parties:
            pid = p.id.encode()
            h.update(struct.pack(">H", len(pid)) + pid + reveals[p.id])
        public_key, key_data = self._tss_result
        done = Done(KeyShare(self.self_id, self._parties, self._threshold, public_key, h.digest(), key_data))
        self._pending.append(done)
        self._tss_result = None
        return done

    def waiting_for(self) -> tuple[str, ...]:
        native = super().waiting_for()
        with self._lock:
            if self._finished or self._failed:
                return native
            others = [p.id for p in self._parties if p.id != self.self_id]
            missing = [p for p in others if p not in self._commits or p not in self._reveals]
        return tuple(dict.fromkeys((*native, *missing)))

    def _on_done(self, header, payload):
        public_key = bytes.fromhex(header["public_key"])
        coincurve.PublicKey(public_key)  # on the curve, or ValueError
        with self._lock:
            self._tss_result = (public_key, payload)
            self._maybe_finish_locked()
        return None


class _SignSession(Session):
    def __init__(self, self_id, signers, share, digest, session_id, path):
        self._digest = digest
        self._child_key = share.child_public_key(path) if path else share.public_key
        super().__init__("signing", self_id, [p.id for p in signers], {
            "self": self_id, "signers": [p._conf() for p in signers], "key": json.loads(share._key_data.reveal()),
            "digest": digest.hex(), "path": list(path), "chain_code": share.chain_code.hex(),
            "session_id": session_id.hex(), "event_max": limits.MPC_SESSION_EVENTS_MAX,
        })

    def _on_done(self, header, payload):
        sig = Signature(int(header["r"], 16), int(header["s"], 16), int(header["recovery"]), self._child_key)
        check_signature(sig, self._digest)
        return Done(sig)


class _ReshareSession(Session):
    def __init__(self, self_id, old, new, old_threshold, new_threshold, share, preparams, session_id, public_key, chain_code):
        self._is_new = any(p.id == self_id for p in new)
        self._new = tuple(new)
        self._new_threshold = new_threshold
        self._public_key = public_key
        self._chain_code = chain_code
        super().__init__("resharing", self_id, [p.id for p in (*old, *new)], {
            "self": self_id, "old": [p._conf() for p in old], "new": [p._conf() for p in new],
            "old_threshold": old_threshold, "new_threshold": new_threshold,
            "key": json.loads(share._key_data.reveal()) if share is not None else None,
            "preparams": json.loads(preparams._reveal()) if preparams is not None else None,
            "session_id": session_id.hex(), "event_max": limits.MPC_SESSION_EVENTS_MAX,
        })

    def _on_done(self, header, payload):
        if not self._is_new:
            return Done(None)
        public_key = bytes.fromhex(header["public_key"])
        if public_key != self._public_key:
            raise ValueError("resharing produced another public key")
        return Done(KeyShare(self.self_id, self._new, self._new_threshold, public_key, self._chain_code, payload))


def keygen_session(self_id: str, parties: Sequence[PartyId], threshold: int, preparams: PreParams,
                   session_id: bytes) -> Session:
    """ECDSA key generation; ends with Done(KeyShare). `threshold` is tss-lib's t: any t+1
    of the parties sign. Every party needs its own pre-parameters (never shared)."""
    _check_session_id(session_id)
    _check_parties(parties, "parties")
    if self_id not in {p.id for p in parties}:
        raise InvalidSessionRequest("self_not_among_parties", self_id)
    if not isinstance(threshold, int) or not 1 <= threshold < len(parties):
        raise InvalidSessionRequest("threshold_out_of_range", f"1..{len(parties) - 1}")
    if not isinstance(preparams, PreParams):
        raise InvalidSessionRequest("preparams_required")
    return _KeygenSession(self_id, tuple(parties), threshold, preparams, session_id)


def sign_session(self_id: str, signers: Sequence[PartyId], share: KeyShare, digest: bytes, session_id: bytes,
                 path: tuple[int, ...] = ()) -> Session:
    """ECDSA signing by exactly t+1 signers; for the child key at `path` (non-hardened BIP32)
    when given. Ends with Done(Signature), verified against the (child) key before release."""
    _check_session_id(session_id)
    _check_parties(signers, "signers")
    if not isinstance(share, KeyShare):
        raise InvalidSessionRequest("key_share_required")
    if self_id != share.party:
        raise InvalidSessionRequest("share_belongs_to_another_party", f"{share.party} != {self_id}")
    if len(signers) != share.threshold + 1:
        raise InvalidSessionRequest("signers_must_be_threshold_plus_one", f"{share.threshold + 1} signers")
    committee = set(share.committee)
    for p in signers:
        if p not in committee:
            raise InvalidSessionRequest("signer_not_in_committee", p.id)
    if self_id not in {p.id for p in signers}:
        raise InvalidSessionRequest("self_not_among_signers", self_id)
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise InvalidSessionRequest("digest_must_be_32_bytes")
    if not 0 < int.from_bytes(digest, "big") < SECP256K1_N:
        raise InvalidSessionRequest("digest_out_of_range")
    path = tuple(path)
    if len(path) > limits.MPC_HD_PATH_DEPTH_MAX:
        raise InvalidSessionRequest("hd_path_too_deep", f"max {limits.MPC_HD_PATH_DEPTH_MAX}")
    for i in path:
        if not isinstance(i, int) or not 0 <= i < HARDENED:
            raise InvalidSessionRequest("hd_index_must_be_non_hardened", repr(i))
    return _SignSession(self_id, tuple(signers), share, digest, session_id, path)


def reshare_session(self_id: str, old: Sequence[PartyId], new: Sequence[PartyId], old_threshold: int,
                    new_threshold: int, share: KeyShare | None, preparams: PreParams | None, session_id: bytes,
                    public_key: bytes, chain_code: bytes) -> Session:
    """Moves a key to a new committee (disjoint party ids). Old parties (at least t+1 of the
    old committee) pass their share; new parties pass fresh pre-parameters. New parties end
    with Done(KeyShare) for the same public key; old parties with Done(None) and should then
    destroy their old share."""
    _check_session_id(session_id)
    _check_parties(old, "old_committee")
    _check_parties(new, "new_committee")
    old_ids, new_ids = {p.id for p in old}, {p.id for p in new}
    if old_ids & new_ids or {p.key for p in old} & {p.key for p in new}:
        raise InvalidSessionRequest("committees_must_be_disjoint", "a peer in both runs two parties")
    if not 1 <= old_threshold < len(old):
        raise InvalidSessionRequest("old_threshold_needs_t_plus_one_old_parties")
    if not 1 <= new_threshold < len(new):
        raise InvalidSessionRequest("new_threshold_out_of_range", f"1..{len(new) - 1}")
    if len(public_key) != 33 or len(chain_code) != 32:
        raise InvalidSessionRequest("public_key_33_bytes_and_chain_code_32_bytes_required")
    if self_id in old_ids:
        if not isinstance(share, KeyShare) or share.party != self_id:
            raise InvalidSessionRequest("old_party_needs_its_share")
        if share.public_key != public_key:
            raise InvalidSessionRequest("share_is_for_another_public_key")
        committee = set(share.committee)
        for p in old:
            if p not in committee:
                raise InvalidSessionRequest("old_party_not_in_committee", p.id)
    elif self_id in new_ids:
        if not isinstance(preparams, PreParams):
            raise InvalidSessionRequest("new_party_needs_preparams")
        share = None
    else:
        raise InvalidSessionRequest("self_in_neither_committee", self_id)
    return _ReshareSession(self_id, tuple(old), tuple(new), old_threshold, new_threshold, share,
                           preparams if self_id in new_ids else None, session_id, public_key, chain_code)


def new_session_id() -> bytes:
    return os.urandom(32)
