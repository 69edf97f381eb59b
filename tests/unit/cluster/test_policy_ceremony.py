"""A peer's own check of a key ceremony (mpc/signer/policy.py verify_ceremony): the intent the
approvals name must be exactly this request, the vault's policy this peer's own, the floors
held, the quorum reached and its delay passed. Real Ed25519 signatures, real records files;
one row per refusal."""

from __future__ import annotations

import dataclasses

import pytest
from nacl.signing import SigningKey

from mpc.signer.policy import Policy, PolicyError, RequestVerifier
from mpc.wire import ceremony as cer
from mpc.wire import requests as rq
from mpc.wire.requests import Refused
from node import limits
from tests.support.records import Clock

NODE = SigningKey.generate()
ALICE, BOB, CAROL, MALLORY = (SigningKey.generate() for _ in range(4))
PK = bytes([2]) + bytes(range(32))
DAY_S = 86_400
OLD = ("p1", "p2", "p3")


def policy(**over) -> Policy:
    d = {
        "node": {"public_key": NODE.verify_key.encode().hex()},
        "approvers": {n: k.verify_key.encode().hex() for n, k in (("alice", ALICE), ("bob", BOB), ("carol", CAROL))},
        "bands": [{"asset": "BTC", "amount_max": 100_000, "approvals_min": 1},
                  {"vault": "cold", "asset": "BTC", "amount_max": 10**9, "approvals_min": 2}],
        "vaults": {"cold": {"delay_s": DAY_S}},
        "rate_limits": {"signatures_per_hour": 100},
        "ceremonies": {"keygen_allowed": True, "vaults": {"cold": {"threshold_min": 2}}},
        "operators": {"p4": "acme", "p5": "acme"},
    }
    d.update(over)
    return Policy.from_dict(d)


def verifier(records, clock, **over) -> RequestVerifier:
    return RequestVerifier(policy(**over), "production", {}, records, clock_ms=clock)


def reshare(vault="hot", old=OLD, old_t=1, new=("p2", "p3", "p4"), new_t=1, lowering=False, approvers=(("alice", ALICE),),
            at_ms=None, digest_of=None, intent_over=None, clock=None):
    """(body, what the request itself would do): the request as a peer parses it, and its approvals."""
    p = policy()
    intent = cer.reshare_intent(vault, PK, old, old_t, new, new_t, p.vault_policy_digest(digest_of or vault), lowering)
    if intent_over:
        intent = dataclasses.replace(intent, **intent_over)
    at = at_ms if at_ms is not None else clock()
    approvals = [cer.approve_ceremony(intent, aid, k, at) for aid, k in approvers]
    body = rq.reshare_request(vault, new, new_t, ceremony=intent, approvals=approvals)
    request = cer.CeremonyIntent("", vault, "reshare", tuple(sorted(old)), old_t, tuple(sorted(new)), new_t, "", PK.hex())
    return body, request


@pytest.fixture
def clock():
    return Clock()


def test_an_approved_reshare_passes_and_is_recorded(records, clock):
    body, request = reshare(clock=clock)
    assert verifier(records, clock).verify_ceremony(body, request).new_committee == ("p2", "p3", "p4")
    # The same request id with another body is another request: refused before anything runs.
    other, _ = reshare(clock=clock, new=("p1", "p2", "p4"))
    other["request_id"] = body["request_id"]
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(other, dataclasses.replace(request, new_committee=("p1", "p2", "p4")))
    assert e.value.reason == "request_id_reused"


def test_a_cold_reshare_waits_out_the_cold_delay_after_two_approvals(records, clock):
    two = (("alice", ALICE), ("bob", BOB))
    body, request = reshare(vault="cold", old_t=2, new=("p1", "p2", "p3", "p4"), new_t=2, approvers=two, clock=clock)
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(body, request)
    assert e.value.reason == "delay_not_elapsed", e.value
    clock.ms += DAY_S * 1000 + 1
    body["created_at_ms"] = clock()
    verifier(records, clock).verify_ceremony(body, request)


def _row(clock, **kw):
    return lambda: reshare(clock=clock, **kw)


def _swap(body_request, **over):
    body, request = body_request
    return body, dataclasses.replace(request, **over)


@pytest.mark.parametrize("case, make, reason", [
    ("no approvals at all (the node alone)", lambda c: reshare(clock=c, approvers=()), "approvals_below_quorum"),
    ("approvals that name another committee", lambda c: _swap(reshare(clock=c), new_committee=("p1", "p4", "p5")),
     "ceremony_intent_mismatch"),
    ("approvals that name another threshold", lambda c: _swap(reshare(clock=c, new=("p1", "p2", "p3", "p4", "p5"), new_t=2),
                                                             new_threshold=3), "ceremony_intent_mismatch"),
    ("approvals of another vault", lambda c: _swap(reshare(clock=c), vault_id="warm"), "ceremony_intent_mismatch"),
    ("approvals of another key", lambda c: _swap(reshare(clock=c), public_key="03" + "11" * 32), "ceremony_intent_mismatch"),
    ("the cold vault under the hot vault's policy", lambda c: reshare(clock=c, vault="cold", old_t=2,
                                                                     new=("p1", "p2", "p3", "p4"), new_t=2, digest_of="hot"),
     "vault_policy_mismatch"),
    ("below the vault's floor", lambda c: reshare(clock=c, vault="cold", old_t=2, new=("p1", "p2", "p3", "p4"), new_t=1,
                                                  lowering=True), "threshold_below_minimum"),
    ("a lower threshold without consent", lambda c: reshare(clock=c, old_t=2, new=("p1", "p2", "p3", "p4"), new_t=1),
     "threshold_lowering_not_consented"),
    ("n-of-n (2-of-2)", lambda c: reshare(clock=c, new=("p1", "p2"), new_t=1), "n_of_n_not_allowed"),
    ("one operator runs t + 1 peers", lambda c: reshare(clock=c, new=("p3", "p4", "p5"), new_t=1),
     "operator_holds_signing_quorum"),
    ("a stranger's signature in an approver's name", lambda c: reshare(clock=c, approvers=(("alice", MALLORY),)),
     "approval_signature_invalid"),
    ("an approval of a payment is not one of a ceremony", lambda c: _payment_approval(c), "approval_signature_invalid"),
    ("an approval from the future", lambda c: reshare(clock=c, at_ms=c() + 3_600_000), "approval_time_out_of_range"),
    ("an approval older than its window", lambda c: reshare(clock=c, at_ms=c() - limits.CEREMONY_APPROVAL_VALID_MS - 1),
     "approvals_expired"),
    ("a cold reshare with the hot vault's one approval", lambda c: reshare(clock=c, vault="cold", old_t=2,
                                                                          new=("p1", "p2", "p3", "p4"), new_t=2),
     "approvals_below_quorum"),
    ("a malformed intent", lambda c: _swap_body(reshare(clock=c), ceremony={"kind": "reshare"}), "request_malformed"),
    ("no intent at all", lambda c: _swap_body(reshare(clock=c), ceremony=None), "ceremony_not_approved"),
])
def test_refusals(records, clock, case, make, reason):
    body, request = make(clock)
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(body, request)
    assert e.value.reason == reason, f"{case}: {e.value}"


def _swap_body(body_request, **over):
    body, request = body_request
    return {**body, **over}, request


def _payment_approval(clock):
    """Alice's untimed signature over the ceremony's canonical bytes, as a payment approval would be."""
    body, request = reshare(clock=clock)
    intent = cer.parse_ceremony_intent(body["ceremony"])
    body["approvals"] = [{"approver_id": "alice", "signature": ALICE.sign(intent.canonical_bytes()).signature.hex(),
                          "approved_at_ms": clock()}]
    return body, request


def test_a_keygen_needs_the_quorum_of_the_vault_it_makes(records, clock):
    p = policy()
    intent = cer.keygen_intent("cold", ("p1", "p2", "p3", "p4"), 2, p.vault_policy_digest("cold"))
    request = cer.CeremonyIntent("", "cold", "keygen", (), 0, ("p1", "p2", "p3", "p4"), 2, "")
    one = rq.keygen_request("cold", ("p1", "p2", "p3", "p4"), 2, ceremony=intent,
                            approvals=[cer.approve_ceremony(intent, "alice", ALICE, clock())])
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(one, request)
    assert e.value.reason == "approvals_below_quorum"


def test_the_policy_digest_covers_what_the_new_committee_enforces():
    base = policy()
    assert base.vault_policy_digest("cold") != base.vault_policy_digest("hot")
    for over in ({"vaults": {"cold": {"delay_s": 60}}}, {"whitelist": {"BTC": ["bcrt1qx"]}}, {"operators": {}},
                 {"ceremonies": {"vaults": {"cold": {"threshold_min": 1}}}}):
        assert policy(**over).vault_policy_digest("cold") != base.vault_policy_digest("cold"), over


@pytest.mark.parametrize("ceremonies, message", [
    ({"threshold_min": 0}, "ceremonies.threshold_min must be an integer 1.."),
    ({"approvals_min": 4}, "ceremonies.approvals_min must be at most 3"),
    ({"vaults": {"cold": {"n_of_n_allowed": "yes"}}}, "ceremonies.vaults.cold.n_of_n_allowed: true or false"),
    ({"vaults": {"cold": {"threshold_minimum": 2}}}, "ceremonies.vaults.cold.threshold_minimum: unknown"),
])
def test_bad_ceremony_rules_stop_the_peer(ceremonies, message):
    with pytest.raises(PolicyError) as e:
        policy(ceremonies=ceremonies)
    assert str(e.value).startswith(message), e.value


def test_the_retired_reshare_switch_is_ignored_with_a_warning():
    p = policy(ceremonies={"reshare_allowed": True})
    assert any("reshare_allowed is ignored" in w for w in p.warnings)
    assert not hasattr(p, "reshare_allowed")


def test_retiring_a_vault_needs_its_quorum_and_delay_and_no_floors(records, clock):
    p = policy()
    intent = cer.retire_intent("cold", PK, ("p1", "p2", "p3"), 2, p.vault_policy_digest("cold"))
    request = cer.CeremonyIntent("", "cold", "retire", ("p1", "p2", "p3"), 2, (), 0, "", PK.hex())
    one = rq.retire_request("cold", ceremony=intent, approvals=[cer.approve_ceremony(intent, "alice", ALICE, clock())])
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(one, request)
    assert e.value.reason == "approvals_below_quorum"
    two = [cer.approve_ceremony(intent, a, k, clock()) for a, k in (("alice", ALICE), ("bob", BOB))]
    with pytest.raises(Refused) as e:
        verifier(records, clock).verify_ceremony(rq.retire_request("cold", ceremony=intent, approvals=two), request)
    assert e.value.reason == "delay_not_elapsed"
    clock.ms += DAY_S * 1000
    assert verifier(records, clock).verify_ceremony(rq.retire_request("cold", ceremony=intent, approvals=two), request).kind == "retire"
