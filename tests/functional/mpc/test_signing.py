"""Keygen then signing with several signer subsets; each signature verified independently with
coincurve (libsecp256k1) against the group key; low-S; recovery id recovers the key."""

from __future__ import annotations

import itertools

import coincurve
import pytest
from support.mpc_ceremonies import random_digest, sign

from mpc import engine

N = engine.SECP256K1_N


def assert_valid_signature(sig: engine.Signature, digest: bytes, public_key: bytes) -> None:
    assert sig.public_key == public_key, f"{sig.public_key.hex()} != {public_key.hex()}"
    assert 0 < sig.r < N and 0 < sig.s <= N // 2, f"not low-S: s={sig.s}"
    # Independent check with libsecp256k1 (coincurve), from the DER and the compact forms.
    assert coincurve.PublicKey(public_key).verify(sig.der(), digest, hasher=None)
    rec = coincurve.PublicKey.from_signature_and_message(sig.compact() + bytes([sig.recovery_id]), digest, hasher=None)
    assert rec.format(compressed=True) == public_key, f"recovery id {sig.recovery_id} recovers another key"
    # and the signature does not verify for another digest
    assert not coincurve.PublicKey(public_key).verify(sig.der(), bytes(31) + b"\x01", hasher=None)


def check_subset(committee, signer_ids):
    digest = random_digest()
    run, _ = sign(committee, list(signer_ids), digest)
    assert not run.errors, run.errors
    assert set(run.results) == set(signer_ids)
    sigs = list(run.results.values())
    assert all(s == sigs[0] for s in sigs), "signers disagree on the signature"
    assert_valid_signature(sigs[0], digest, committee.public_key)
    return sigs[0]


def test_keygen_2of3_agrees_on_key_and_chain_code(committee_2of3):
    shares = committee_2of3.shares
    assert len({s.public_key for s in shares.values()}) == 1
    assert len({s.chain_code for s in shares.values()}) == 1
    for pid, share in shares.items():
        assert share.party == pid and share.threshold == 1
        assert [p.id for p in share.committee] == [p.id for p in sorted(committee_2of3.parties, key=lambda p: p.key)]
        # a share survives its serialisation unchanged
        again = engine.KeyShare.from_bytes(share.to_bytes())
        assert again.to_bytes() == share.to_bytes()


@pytest.mark.parametrize("subset", list(itertools.combinations(["signer-1", "signer-2", "signer-3"], 2)))
def test_sign_2of3_every_subset(committee_2of3, subset):
    check_subset(committee_2of3, subset)


@pytest.mark.parametrize("subset", [("peer-1", "peer-2", "peer-3"), ("peer-3", "peer-4", "peer-5"), ("peer-1", "peer-3", "peer-5")])
def test_sign_3of5_subsets(committee_3of5, subset):
    check_subset(committee_3of5, subset)


def test_two_signatures_differ_and_both_verify(committee_2of3):
    a = check_subset(committee_2of3, ("signer-1", "signer-2"))
    b = check_subset(committee_2of3, ("signer-1", "signer-2"))
    assert a.r != b.r, "fresh nonces per session"


def test_keyshare_repr_and_logs_have_no_secrets(committee_2of3, capsys):
    share = committee_2of3.shares["signer-1"]
    secret_fragment = share._key_data.reveal()[:64]
    text = repr(share) + str(share)
    assert "<redacted>" in text and secret_fragment.decode(errors="ignore") not in text
    assert '"Xi"' not in text and "PaillierSK" not in text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(share)
