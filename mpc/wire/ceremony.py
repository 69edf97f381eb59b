"""Ceremony intents: what approvers approve when a vault's keys change (issue 15).

A key generation or a reshare (any change of committee or threshold) is an intent like a
payment: the node sends it with approvals by the vault's approver quorum, and every peer of the
old and of the new committee checks them itself (mpc/signer/policy.py `verify_ceremony`).
An approval binds exactly what changes: the vault, its public key (a reshare), the old and new
committee (peer names) and threshold, whether lowering the threshold is consented to, and the
digest of the vault's policy the new committee will enforce (`Policy.vault_policy_digest`).

Approvers sign `ceremony_message(intent, approved_at_ms)`: a domain of its own in front, so an
approval of a payment (`WithdrawalIntent.canonical_bytes()`, which begins with `{`) is never
read as one of a ceremony, nor the reverse. Ceremony approvals are always timed (the
approver's own clock): a peer enforces the ceremony delay from the signed times alone.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import rfc8785
from nacl.signing import SigningKey

from node import limits
from node.ports import Approval

CEREMONY_APPROVE_DOMAIN = b"custody/ceremony-approve-at/v1\n"
KINDS = ("keygen", "reshare", "retire")
POLICY_DIGEST_HEX_CHARS = 64


class CeremonyIntentInvalid(ValueError):
    """The ceremony intent in a request is malformed (a peer refuses it as request_malformed)."""


@dataclass(frozen=True)
class CeremonyIntent:
    ceremony_id: str
    vault_id: str
    kind: str  # keygen | reshare | retire (every share of the vault destroyed)
    old_committee: tuple[str, ...]  # peer names, sorted; () for a key generation
    old_threshold: int  # 0 for a key generation
    new_committee: tuple[str, ...]  # peer names, sorted
    new_threshold: int
    policy_digest: str  # hex SHA-256 of the vault's policy (mpc/signer/policy.py vault_policy_digest)
    public_key: str = ""  # hex, the vault's group key (a reshare keeps it); "" for a key generation
    threshold_lowering: bool = False  # the quorum's explicit consent to new_threshold < old_threshold

    def canonical(self) -> dict:
        return {"ceremony_id": self.ceremony_id, "vault_id": self.vault_id, "kind": self.kind,
                "old_committee": list(self.old_committee), "old_threshold": self.old_threshold,
                "new_committee": list(self.new_committee), "new_threshold": self.new_threshold,
                "policy_digest": self.policy_digest, "public_key": self.public_key,
                "threshold_lowering": self.threshold_lowering}

    def canonical_bytes(self) -> bytes:
        return rfc8785.dumps(self.canonical())


def ceremony_message(intent: CeremonyIntent, approved_at_ms: int) -> bytes:
    assert type(approved_at_ms) is int and approved_at_ms >= 0, approved_at_ms
    return CEREMONY_APPROVE_DOMAIN + str(approved_at_ms).encode() + b"\n" + intent.canonical_bytes()


def approve_ceremony(intent: CeremonyIntent, approver_id: str, key: SigningKey, approved_at_ms: int) -> Approval:
    return Approval(approver_id, key.sign(ceremony_message(intent, approved_at_ms)).signature, approved_at_ms)


def new_ceremony_id() -> str:
    return secrets.token_hex(16)


def keygen_intent(vault_id: str, committee, threshold: int, policy_digest: str, ceremony_id: str | None = None) -> CeremonyIntent:
    return CeremonyIntent(ceremony_id or new_ceremony_id(), vault_id, "keygen", (), 0, tuple(sorted(committee)), threshold,
                          policy_digest)


def reshare_intent(vault_id: str, public_key: bytes, old_committee, old_threshold: int, new_committee, new_threshold: int,
                   policy_digest: str, threshold_lowering: bool = False, ceremony_id: str | None = None) -> CeremonyIntent:
    """`old_committee`: peer names or party ids (`peer:generation`); named by peer here."""
    old = tuple(sorted({p.rpartition(":")[0] or p for p in old_committee}))
    return CeremonyIntent(ceremony_id or new_ceremony_id(), vault_id, "reshare", old, old_threshold,
                          tuple(sorted(new_committee)), new_threshold, policy_digest, public_key.hex(), threshold_lowering)


def retire_intent(vault_id: str, public_key: bytes, committee, threshold: int, policy_digest: str,
                  ceremony_id: str | None = None) -> CeremonyIntent:
    """The vault's key destroyed on every peer of its committee: no new committee."""
    old = tuple(sorted({p.rpartition(":")[0] or p for p in committee}))
    return CeremonyIntent(ceremony_id or new_ceremony_id(), vault_id, "retire", old, threshold, (), 0, policy_digest,
                          public_key.hex())


def _names(v, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) > limits.MPC_PARTIES_MAX or not all(isinstance(p, str) and 0 < len(p) <= 64 for p in v):
        raise CeremonyIntentInvalid(f"{where}: a list of at most {limits.MPC_PARTIES_MAX} peer names")
    if list(v) != sorted(set(v)):
        raise CeremonyIntentInvalid(f"{where}: sorted, without repeats")
    return tuple(v)


def _small_int(v, where: str) -> int:
    if type(v) is not int or not 0 <= v <= limits.MPC_PARTIES_MAX:
        raise CeremonyIntentInvalid(f"{where}: an integer 0..{limits.MPC_PARTIES_MAX}")
    return v


def parse_ceremony_intent(d) -> CeremonyIntent:
    if not isinstance(d, dict):
        raise CeremonyIntentInvalid("ceremony: an object is required")
    fields = set(CeremonyIntent.__dataclass_fields__)
    if set(d) != fields:
        raise CeremonyIntentInvalid(f"ceremony: exactly the fields {sorted(fields)}")
    for k in ("ceremony_id", "vault_id", "kind", "policy_digest", "public_key"):
        if not isinstance(d[k], str) or len(d[k]) > 128:
            raise CeremonyIntentInvalid(f"ceremony.{k}: a string of at most 128 characters")
    if not 1 <= len(d["ceremony_id"]) <= 128 or d["kind"] not in KINDS:
        raise CeremonyIntentInvalid("ceremony: ceremony_id / kind")
    if len(d["policy_digest"]) != POLICY_DIGEST_HEX_CHARS:
        raise CeremonyIntentInvalid("ceremony.policy_digest: hex SHA-256")
    if not isinstance(d["threshold_lowering"], bool):
        raise CeremonyIntentInvalid("ceremony.threshold_lowering: true or false")
    return CeremonyIntent(d["ceremony_id"], d["vault_id"], d["kind"], _names(d["old_committee"], "ceremony.old_committee"),
                          _small_int(d["old_threshold"], "ceremony.old_threshold"),
                          _names(d["new_committee"], "ceremony.new_committee"),
                          _small_int(d["new_threshold"], "ceremony.new_threshold"), d["policy_digest"], d["public_key"],
                          d["threshold_lowering"])


RESHARE_CONFIRM_DOMAIN = b"custody/reshare-confirm/v1\n"


def reshare_confirm_digest(body: dict) -> bytes:
    """What the new committee signs, with the vault's root key, before any old share is
    destroyed: SHA-256 of a domain of its own and the reshare request's digest. No transaction's
    digest has this preimage (a Bitcoin sighash is SHA-256 of a 32-byte hash; this preimage is
    longer), so the signature attests only that the new committee can sign."""
    import hashlib

    from mpc.wire import requests as rq

    return hashlib.sha256(RESHARE_CONFIRM_DOMAIN + rq.request_digest(body)).digest()



def confirm_signature_valid(body: dict, public_key: bytes, signature65: bytes) -> bool:
    """A 65-byte r||s||recovery_id signature over reshare_confirm_digest(body) by `public_key`."""
    import coincurve

    if len(signature65) != 65:
        return False
    try:
        recovered = coincurve.PublicKey.from_signature_and_message(bytes(signature65), reshare_confirm_digest(body), hasher=None)
    except (ValueError, TypeError):
        return False
    return recovered.format() == public_key
