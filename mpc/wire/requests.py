"""Node-signed ceremony requests: their canonical bytes, the node's signature, approvals.

A request is an RFC 8785 JSON object; the node signs DOMAIN ‖ bytes with its Ed25519 key. Peers
verify the signature over the exact bytes received, then parse them. Approvers sign
`WithdrawalIntent.canonical_bytes()` (node/ports.py) with their Ed25519 keys, or, in a timed
approval, `approval_message(intent, approved_at_ms)`; a timed approval carries its
`approved_at_ms` in the request (what lets a peer enforce a cold vault's delay itself).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from node import limits
from node.ports import Approval, InputKey, Payment, SigningDigest, UnsignedTransaction, WithdrawalIntent, approval_message

DOMAIN = b"custody/signer-request/v1\n"
KINDS = ("keygen", "sign", "reshare", "reserves", "retire")


class Refused(Exception):
    """An expected refusal, named as a sentence: `approvals_below_quorum`, ..."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def approve(intent: WithdrawalIntent, approver_id: str, key: SigningKey, approved_at_ms: int | None = None) -> Approval:
    return Approval(approver_id, key.sign(approval_message(intent, approved_at_ms)).signature, approved_at_ms)


def _approval_json(a: Approval) -> dict:
    d = {"approver_id": a.approver_id, "signature": a.signature.hex()}
    if a.approved_at_ms is not None:
        d["approved_at_ms"] = a.approved_at_ms
    return d


def new_request_id() -> str:
    return secrets.token_hex(16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def keygen_request(vault_id: str, committee, threshold: int, request_id: str | None = None,
                   ceremony=None, approvals=()) -> dict:
    """`ceremony`: the approved CeremonyIntent (mpc/wire/ceremony.py); `approvals` of it."""
    return {"kind": "keygen", "request_id": request_id or new_request_id(), "created_at_ms": now_ms(),
            "vault_id": vault_id, "committee": sorted(committee), "threshold": threshold,
            "ceremony": ceremony.canonical() if ceremony is not None else None,
            "approvals": [_approval_json(a) for a in approvals]}


def reshare_request(vault_id: str, new_committee, new_threshold: int, request_id: str | None = None,
                    ceremony=None, approvals=()) -> dict:
    """The caller adds old_committee (party ids), old_threshold, public_key, chain_code."""
    return {"kind": "reshare", "request_id": request_id or new_request_id(), "created_at_ms": now_ms(),
            "vault_id": vault_id, "new_committee": sorted(new_committee), "new_threshold": new_threshold,
            "ceremony": ceremony.canonical() if ceremony is not None else None,
            "approvals": [_approval_json(a) for a in approvals]}


def retire_request(vault_id: str, request_id: str | None = None, ceremony=None, approvals=()) -> dict:
    """Every share of the vault destroyed (sent over the Reshare RPC); the caller adds
    old_committee (party ids), old_threshold and public_key, as for a reshare."""
    return {"kind": "retire", "request_id": request_id or new_request_id(), "created_at_ms": now_ms(), "vault_id": vault_id,
            "ceremony": ceremony.canonical() if ceremony is not None else None,
            "approvals": [_approval_json(a) for a in approvals]}


def sign_request(vault_id: str, tx: UnsignedTransaction | None, intent: WithdrawalIntent | None,
                 approvals=(), opaque_digests: list[SigningDigest] = (), request_id: str | None = None) -> dict:
    body = {"kind": "sign", "request_id": request_id or new_request_id(), "created_at_ms": now_ms(), "vault_id": vault_id,
            "transaction": None, "intent": None,
            "approvals": [_approval_json(a) for a in approvals],
            "opaque_digests": [{"path": list(d.path), "digest": d.digest.hex()} for d in opaque_digests]}
    if tx is not None:
        body["transaction"] = {"chain": tx.chain, "network": tx.network, "payload": tx.payload.hex(),
                               "inputs": [{"path": list(i.path), "amount": str(i.amount)} for i in tx.inputs],
                               "change_paths": [list(p) for p in tx.change_paths]}
        if tx.prev_txs:  # bitcoin: each input's previous transaction, stripped, once
            body["transaction"]["prev_txs"] = [raw.hex() for raw in tx.prev_txs]
        if tx.nonce_evidence:  # ethereum: a signed transaction of the sender near this nonce
            body["transaction"]["nonce_evidence"] = tx.nonce_evidence.hex()
    if intent is not None:
        body["intent"] = intent.canonical()
    return body


def reserves_request(vault_id: str, chain: str, paths, message: str, request_id: str | None = None) -> dict:
    """Signs the proof-of-reserves message (proofs/assets.py) with the child key at each path.
    Every peer parses `message` itself and signs only the digest it computes from it."""
    return {"kind": "reserves", "request_id": request_id or new_request_id(), "created_at_ms": now_ms(),
            "vault_id": vault_id, "chain": chain, "paths": [list(p) for p in paths], "message": message}


def encode(body: dict) -> bytes:
    return rfc8785.dumps(body)


def request_digest(body: dict) -> bytes:
    """What makes two requests the same one: SHA-256 of the RFC 8785 bytes of the body without
    `created_at_ms` (a node retry re-signs the same request at a new time). Any other field
    that differs makes it another request: under the same request_id, `request_id_reused`."""
    b = {k: v for k, v in body.items() if k != "created_at_ms"}
    tx = b.get("transaction")
    if isinstance(tx, dict) and isinstance(tx.get("prev_txs"), list):
        # Up to megabytes of hex: each stands in by its SHA-256 (the same request either way;
        # RFC 8785 in Python costs ~30 ms per MB, inside every peer's check).
        b["transaction"] = {**tx, "prev_txs": [hashlib.sha256(h.encode()).hexdigest() if isinstance(h, str) else h
                                               for h in tx["prev_txs"]]}
    try:
        return hashlib.sha256(encode(b)).digest()
    except (ValueError, RecursionError) as exc:  # rfc8785: integers beyond 2**53, lone surrogates
        raise Refused("request_malformed", f"not canonical JSON: {type(exc).__name__}") from None


def sign_body(body: dict, node_key: SigningKey) -> tuple[bytes, bytes]:
    raw = encode(body)
    return raw, node_key.sign(DOMAIN + raw).signature


def verify_node_signature(raw: bytes, signature: bytes, node_public_key: bytes) -> None:
    try:
        VerifyKey(node_public_key).verify(DOMAIN + raw, signature)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise Refused("node_signature_invalid", type(exc).__name__) from None


def parse(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("request_malformed", f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("kind") not in KINDS:
        raise Refused("request_malformed", "unknown kind")
    for k, t in (("request_id", str), ("vault_id", str), ("created_at_ms", int)):
        if not isinstance(body.get(k), t) or isinstance(body.get(k), bool):
            raise Refused("request_malformed", f"{k} missing or not {t.__name__}")
    if not 1 <= len(body["request_id"]) <= 128 or not 1 <= len(body["vault_id"]) <= 128:
        raise Refused("request_malformed", "request_id / vault_id length")
    return body


def _path(v) -> tuple[int, ...]:
    if not isinstance(v, list) or len(v) > 16 or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**31 for i in v):
        raise Refused("request_malformed", f"bad derivation path {v!r}")
    return tuple(v)


def _int(v) -> int:
    if not isinstance(v, str) or not v.isdigit() or len(v) > 78:
        raise Refused("request_malformed", f"amount must be a decimal string, got {v!r}")
    return int(v)


def parse_intent(d) -> WithdrawalIntent:
    try:
        return WithdrawalIntent(
            intent_id=_intent_id(d["intent_id"]), vault_id=str(d["vault_id"]), chain=str(d["chain"]), network=str(d["network"]),
            asset=str(d["asset"]),
            payments=tuple(Payment(str(p["destination"]), _int(p["amount"])) for p in d["payments"]),
            fee_max=_int(d["fee_max"]), kind=str(d["kind"]),
            own_destination_paths=tuple(_path(p) for p in d["own_destination_paths"]),
            own_destination_vault=_vault_ref(d.get("own_destination_vault", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused("request_malformed", f"intent: {exc}") from None


def parse_transaction(d) -> UnsignedTransaction:
    try:
        return UnsignedTransaction(
            chain=str(d["chain"]), network=str(d["network"]), payload=bytes.fromhex(d["payload"]),
            inputs=tuple(InputKey(_path(i["path"]), _int(i["amount"])) for i in d["inputs"]),
            change_paths=tuple(_path(p) for p in d["change_paths"]),
            prev_txs=_prev_txs(d.get("prev_txs", [])),
            nonce_evidence=_nonce_evidence(d.get("nonce_evidence", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused("request_malformed", f"transaction: {exc}") from None


def _nonce_evidence(v) -> bytes:
    if not isinstance(v, str) or len(v) > 2 * limits.CLUSTER_NONCE_EVIDENCE_BYTES_MAX:
        raise ValueError(f"nonce_evidence must be hex of at most {limits.CLUSTER_NONCE_EVIDENCE_BYTES_MAX} bytes")
    return bytes.fromhex(v)


def _prev_txs(items) -> tuple[bytes, ...]:
    """Hex strings; their sizes and contents are the checker's (chains/bitcoin/intent.py)."""
    if not isinstance(items, list) or len(items) > limits.CLUSTER_DIGESTS_PER_REQUEST_MAX:
        raise ValueError(f"prev_txs must be a list of at most {limits.CLUSTER_DIGESTS_PER_REQUEST_MAX} hex strings")
    if not all(isinstance(h, str) for h in items):
        raise ValueError("prev_txs must be hex strings")
    return tuple(bytes.fromhex(h) for h in items)


def _intent_id(v) -> str:
    """Bounded: every peer records it per transaction version (spend-once, mpc/signer/records.py)."""
    if not isinstance(v, str) or not 1 <= len(v) <= limits.CLUSTER_INTENT_ID_CHARS_MAX:
        raise ValueError(f"intent_id must be a string of 1..{limits.CLUSTER_INTENT_ID_CHARS_MAX} characters, got {v!r:.60}")
    return v


def _vault_ref(v) -> str:
    if not isinstance(v, str) or len(v) > 128:
        raise ValueError(f"own_destination_vault must be a string of at most 128 characters, got {v!r:.60}")
    return v


def _time_ms(v) -> int | None:
    if v is None:
        return None
    if type(v) is not int or not 0 <= v < 2**53:
        raise ValueError(f"approved_at_ms must be an integer of Unix milliseconds, got {v!r:.40}")
    return v


def parse_approvals(items) -> list[Approval]:
    if not isinstance(items, list):
        raise Refused("request_malformed", "approvals")
    try:
        return [Approval(str(a["approver_id"]), bytes.fromhex(a["signature"]), _time_ms(a.get("approved_at_ms"))) for a in items]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Refused("request_malformed", f"approvals: {exc}") from None


def parse_opaque(items) -> list[SigningDigest]:
    if not isinstance(items, list):
        raise Refused("request_malformed", "opaque_digests")
    out = []
    for d in items:
        try:
            digest = bytes.fromhex(d["digest"])
        except (KeyError, TypeError, ValueError):
            raise Refused("request_malformed", "opaque digest") from None
        if len(digest) != 32:
            raise Refused("request_malformed", "digest must be 32 bytes")
        out.append(SigningDigest(_path(d["path"]), digest))
    return out
