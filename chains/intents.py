"""Helpers on withdrawal intents shared by both adapters."""

from __future__ import annotations

import hashlib
import json

from chains.errors import ChainError
from node.ports import WithdrawalIntent


def fingerprint(intent: WithdrawalIntent) -> str:
    """SHA-256 of the intent's RFC 8785 bytes: what a transaction was built for."""
    return hashlib.sha256(intent.canonical_bytes()).hexdigest()


def same_intent_or_refuse(meta_json: str, intent: WithdrawalIntent) -> None:
    """A retry with the same intent id must carry the same fields (TigerBeetle's
    `exists_with_different_*`): an id is never reused for another payment."""
    if json.loads(meta_json).get("intent_sha256") != fingerprint(intent):
        raise ChainError("intent_id_reused_with_different_fields", intent.intent_id)
