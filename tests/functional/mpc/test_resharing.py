"""Resharing a 2-of-3 key to a new committee of 3 with disjoint ids: the same public key and
chain code, and the new committee signs (group key and HD child)."""

from __future__ import annotations

import pytest
from support.mpc_ceremonies import Committee, random_digest, sign
from support.preparams import fixture_preparams
from test_hd import bip32_child
from test_signing import assert_valid_signature

from mpc import engine
from mpc.local import run_local


@pytest.fixture(scope="module")
def reshared(committee_2of3) -> Committee:
    old_parties = {p.id: p for p in committee_2of3.parties}
    old = [old_parties["signer-1"], old_parties["signer-3"]]  # t+1 = 2 of the old committee take part
    new = [engine.PartyId.of(f"new-signer-{i}") for i in (1, 2, 3)]
    pps = fixture_preparams(3, offset=8)  # fixture pre-params: never in production
    sid = engine.new_session_id()
    first = committee_2of3.shares["signer-1"]
    sessions = {}
    for p in old:
        sessions[p.id] = engine.reshare_session(p.id, old, new, 1, 1, committee_2of3.shares[p.id], None, sid,
                                                first.public_key, first.chain_code)
    for p, pp in zip(new, pps):
        sessions[p.id] = engine.reshare_session(p.id, old, new, 1, 1, None, pp, sid, first.public_key, first.chain_code)
    run = run_local(sessions, timeout_s=240)
    for s in sessions.values():
        s.close()
    assert not run.errors, run.errors
    assert run.results["signer-1"] is None and run.results["signer-3"] is None, "old parties end without a share"
    return Committee(new, 1, {p.id: run.results[p.id] for p in new})


def test_new_committee_has_same_public_key_and_chain_code(reshared, committee_2of3):
    for share in reshared.shares.values():
        assert share.public_key == committee_2of3.public_key
        assert share.chain_code == committee_2of3.shares["signer-1"].chain_code
        assert [p.id for p in share.committee] == [p.id for p in sorted(reshared.parties, key=lambda p: p.key)]


@pytest.mark.parametrize("signers", [("new-signer-1", "new-signer-2"), ("new-signer-2", "new-signer-3")])
def test_new_committee_signs(reshared, committee_2of3, signers):
    digest = random_digest()
    run, _ = sign(reshared, list(signers), digest)
    assert not run.errors, run.errors
    assert_valid_signature(next(iter(run.results.values())), digest, committee_2of3.public_key)


def test_new_committee_signs_for_child_key(reshared):
    digest, path = random_digest(), (3, 9)
    run, _ = sign(reshared, ["new-signer-1", "new-signer-3"], digest, path=path)
    assert not run.errors, run.errors
    assert_valid_signature(next(iter(run.results.values())), digest, bip32_child(reshared.shares["new-signer-1"], path))


def test_committees_must_be_disjoint(committee_2of3):
    p = committee_2of3.parties
    share = committee_2of3.shares[p[0].id]
    with pytest.raises(engine.InvalidSessionRequest) as e:
        engine.reshare_session(p[0].id, p[:2], [p[0], engine.PartyId.of("x"), engine.PartyId.of("y")], 1, 1, share, None,
                               engine.new_session_id(), share.public_key, share.chain_code)
    assert e.value.code == "committees_must_be_disjoint"
