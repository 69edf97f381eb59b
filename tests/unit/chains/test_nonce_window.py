"""The Ethereum nonce window (issue 14): a peer signs nonce n >= W only beside a transaction from
the same sender, signed by the vault's key, at a nonce >= n - W. One row per way a node could
ask for a nonce far ahead. The evidence is signed with a plain test key standing in for the
vault's (tests/support/test_signer.py, test only)."""

from __future__ import annotations

import dataclasses

import pytest

from chains import intent_checker
from chains.ethereum import tx as etx
from node import limits
from node.ports import NonceUnproven
from tests.support.cluster import eth_withdrawal
from tests.support.test_signer import PlainTestSigner

VAULT = PlainTestSigner("nonce-window-vault")
OTHER = PlainTestSigner("nonce-window-other")
KEYS = VAULT.vault_keys()
ETH = intent_checker("ethereum")
W = limits.CLUSTER_ETH_NONCE_WINDOW
SENDER = (0, 0)  # eth_withdrawal's sender path


def signed_at(nonce: int, signer=VAULT, chain_id: int = 1337, path=SENDER) -> bytes:
    """A signed transfer from `signer`'s key at `path`: what the vault broadcast at `nonce`."""
    t = etx.Eip1559Tx(chain_id, nonce, 10**9, 2 * 10**9, 21_000, etx.checksum("0x" + "ef" * 20), 1)
    sig = signer.sign_one(path, etx.digest_of(etx.unsigned_payload(t)))
    return etx.attach(t, sig, etx.address_of(signer.vault_keys().child_public_key(path)))


CASES = [
    # (case, nonce asked for, evidence, refusal or None)
    ("the first nonces need none", 0, b"", None),
    ("the window's last nonce needs none", W - 1, b"", None),
    ("the window's end needs evidence", W, b"", "nonce_evidence_missing"),
    ("far ahead, evidence at its window's start", 1_000, lambda: signed_at(1_000 - W), None),
    ("far ahead, evidence at the nonce itself (a replacement)", 1_000, lambda: signed_at(1_000), None),
    ("far ahead, evidence one below its window", 1_000, lambda: signed_at(1_000 - W - 1), "nonce_beyond_window"),
    ("far ahead, no evidence", 1_000, b"", "nonce_evidence_missing"),
    ("evidence signed by another key", 1_000, lambda: signed_at(999, OTHER), "nonce_evidence_invalid"),
    ("evidence from another of our addresses", 1_000, lambda: signed_at(999, path=(0, 1)), "nonce_evidence_invalid"),
    ("evidence from another chain", 1_000, lambda: signed_at(999, chain_id=1), "nonce_evidence_invalid"),
    ("evidence that is not signed", 1_000, lambda: etx.unsigned_payload(etx.parse_signed(signed_at(999))[0]), "nonce_evidence_invalid"),
    ("evidence that is not a transaction", 1_000, b"\x02\xc0", "nonce_evidence_invalid"),
]


@pytest.mark.parametrize("case,nonce,evidence,reason", CASES, ids=[c[0] for c in CASES])
def test_a_nonce_is_signed_only_within_the_window_above_its_evidence(case, nonce, evidence, reason):
    tx, intent = eth_withdrawal(KEYS, "v", nonce=nonce)
    tx = dataclasses.replace(tx, nonce_evidence=evidence() if callable(evidence) else evidence)
    if reason is None:
        assert len(ETH.check(tx, intent, KEYS)) == 1, case
        return
    with pytest.raises(NonceUnproven) as e:
        ETH.check(tx, intent, KEYS)
    assert e.value.reason == reason, f"{case}: {e.value}"


def test_a_signed_transaction_parses_back_to_what_was_signed():
    raw = signed_at(7)
    t, sig = etx.parse_signed(raw)
    assert t.nonce == 7 and etx.recover_address(etx.digest_of(etx.unsigned_payload(t)), sig) == etx.address_of(
        KEYS.child_public_key(SENDER))
    assert etx.tx_hash(raw) == etx.tx_hash(etx.attach(t, sig, etx.address_of(KEYS.child_public_key(SENDER))))
