"""HD keys: the child public key derived in Python with an independent BIP32 library (`bip32`)
equals the key tss-lib signs for (through its key-derivation delta), and the signature
verifies under it (and not under the group key)."""

from __future__ import annotations

import bip32
import coincurve
import pytest
from support.mpc_ceremonies import random_digest, sign
from test_signing import assert_valid_signature

from mpc import engine

PATHS = [(0,), (0, 5), (44, 0, 0, 7), (2**31 - 1,)]


def bip32_child(share: engine.KeyShare, path: tuple[int, ...]) -> bytes:
    node = bip32.BIP32(chaincode=share.chain_code, pubkey=share.public_key)
    return node.get_pubkey_from_path("m/" + "/".join(map(str, path)))


@pytest.mark.parametrize("path", PATHS)
def test_child_public_key_matches_bip32_library(committee_2of3, path):
    for share in committee_2of3.shares.values():
        assert share.child_public_key(path) == bip32_child(share, path)


@pytest.mark.parametrize("path,signers", [((0, 5), ("signer-1", "signer-3")), ((44, 0, 0, 7), ("signer-2", "signer-3"))])
def test_sign_for_child_key_verifies_under_child(committee_2of3, path, signers):
    digest = random_digest()
    run, _ = sign(committee_2of3, list(signers), digest, path=path)
    assert not run.errors, run.errors
    sigs = list(run.results.values())
    assert len(sigs) == 2 and sigs[0] == sigs[1]
    child = bip32_child(committee_2of3.shares[signers[0]], path)
    assert_valid_signature(sigs[0], digest, child)
    assert not coincurve.PublicKey(committee_2of3.public_key).verify(sigs[0].der(), digest, hasher=None)


def test_sign_3of5_for_child_key(committee_3of5):
    digest, path = random_digest(), (1, 2)
    run, _ = sign(committee_3of5, ["peer-2", "peer-4", "peer-5"], digest, path=path)
    assert not run.errors, run.errors
    sig = next(iter(run.results.values()))
    assert_valid_signature(sig, digest, bip32_child(committee_3of5.shares["peer-2"], path))


def test_hardened_index_is_refused_before_any_session(committee_2of3):
    share = committee_2of3.shares["signer-1"]
    with pytest.raises(engine.InvalidSessionRequest) as e:
        engine.sign_session("signer-1", committee_2of3.parties[:2], share, bytes(31) + b"\x01", engine.new_session_id(), path=(2**31,))
    assert e.value.code == "hd_index_must_be_non_hardened"
