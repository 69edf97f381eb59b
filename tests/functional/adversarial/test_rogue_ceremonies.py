"""Who can sign is guarded like what gets signed (issue 15): a compromised node (harness.RogueNode:
the node's own certificate and request key) asks six real signer processes for key generations
and reshares. Every peer of the old quorum and of the new committee checks the ceremony's
approvals, binding, floors and delay itself; each attack is refused with a named reason and
every share stays as it was. An approved rotation completes with the same public key.

Shortcut, said here: fixture pre-params (tests/fixtures/preparams: never in production). The
cold vault's approvals are signed a day in the past by the dev approvers (their own clock is
what a peer reads: tests/unit/cluster/test_policy_ceremony.py shows the delay refused until it
has passed).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from mpc.dev_approvals import DevApprovers
from mpc.proto import signer_pb2 as pb
from mpc.wire import ceremony as cer
from mpc.wire import requests as rq
from mpc.wire.parties import RecordKeys
from node.ports import SigningRefused
from tests.functional.adversarial.harness import RogueNode, peer_stub
from tests.functional.cluster.conftest import make_cluster
from tests.support.cluster import btc_withdrawal
from tests.support.procs import wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALL = tuple(f"peer-{i}" for i in range(1, 7))
DAY_MS = 86_400_000
# The cold vault's own rules on peers 1-5; peer-6 knows only the shared (hot) ones.
COLD_POLICY = """
[[bands]]
vault = "cold"
asset = "BTC"
amount_max = "1000000000"
approvals_min = 2
[vaults.cold]
delay_s = 86400
[ceremonies.vaults.cold]
threshold_min = 2
"""


@pytest.fixture(scope="module")
def cluster(request):
    # peer-5 and peer-6 run the test-only RogueParticipant, without faults until a test sets some.
    yield from make_cluster(request, 6, 2, round_timeout_ms=8_000, rogues={"peer-5": {}, "peer-6": {}},
                            before_start=lambda c: c.add_policy(COLD_POLICY, peers=ALL[:5]))


@pytest.fixture(scope="module")
def node(cluster):
    return RogueNode(cluster)


@pytest.fixture(scope="module")
def approvers(cluster):
    return DevApprovers(cluster.info)


@pytest.fixture(scope="module")
def treasury(cluster):
    """3-of-5 on peers 1-5, the vault of the 7 December attack."""
    return cluster.client().keygen("treasury", ALL[:5], 2)


@pytest.fixture(scope="module")
def cold(cluster):
    """3-of-4 on peers 1-4, two approvals and a day's delay, approved a day ago."""
    client = cluster.client()
    client.ceremony_approver = DevApprovers(cluster.info, approved_at_ms=lambda: rq.now_ms() - DAY_MS - 60_000)
    return client.keygen("cold", ALL[:4], 2)


def reshare_body(vault, new, new_t, ceremony=None, approvals=()) -> dict:
    body = rq.reshare_request(vault.vault_id, new, new_t, ceremony=ceremony, approvals=approvals)
    body.update({"old_committee": list(vault.committee), "old_threshold": vault.threshold,
                 "public_key": vault.public_key.hex(), "chain_code": vault.chain_code.hex()})
    return body


def shares(cluster, vault_id: str) -> dict[str, str | None]:
    out = {}
    for name in ALL:
        f = cluster.dir / name / "data" / "vaults" / f"{vault_id}.sealed"
        out[name] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
    return out


def refused_by_every_peer(reply: pb.CeremonyReply, reason: str, must_include=()) -> dict[str, str]:
    """Refused at Join by every peer asked (the old quorum the coordinator picked and the new
    committee), each naming `reason` itself; returns peer -> reason."""
    assert not reply.ok and reply.reason.startswith("join_failed"), reply
    refusals = dict(re.findall(r"'(peer-\d+)': ['\"]([a-z_]+)", reply.reason))
    assert refusals and set(refusals.values()) == {reason}, f"expected {reason} from every peer: {reply.reason}"
    missing = set(must_include) - set(refusals)
    assert not missing, f"{sorted(missing)} did not check: {reply.reason}"
    return refusals


def test_the_7_december_attack_node_alone_to_two_of_two_is_refused(cluster, node, treasury):
    before = shares(cluster, "treasury")
    reply = node.call("peer-1", "Reshare", reshare_body(treasury, ("peer-1", "peer-2"), 1))
    # peer-1 coordinates with two more peers of the old committee: each refuses on its own.
    assert len(refused_by_every_peer(reply, "ceremony_not_approved", ("peer-1", "peer-2"))) >= 3
    assert shares(cluster, "treasury") == before
    # The same with an intent the node wrote itself, unapproved: n-of-n is refused before anything else.
    intent = cer.reshare_intent("treasury", treasury.public_key, treasury.committee, 2, ("peer-1", "peer-2"), 1,
                                DevApprovers(cluster.info).policy_digest("treasury"), threshold_lowering=True)
    reply = node.call("peer-1", "Reshare", reshare_body(treasury, ("peer-1", "peer-2"), 1, intent))
    refused_by_every_peer(reply, "n_of_n_not_allowed", ("peer-1", "peer-2"))
    assert shares(cluster, "treasury") == before and all(before[p] for p in ALL[:5])


def test_a_reshare_by_the_node_alone_is_refused(cluster, node, treasury):
    before = shares(cluster, "treasury")
    new = ("peer-1", "peer-2", "peer-3", "peer-6")
    intent = cer.reshare_intent("treasury", treasury.public_key, treasury.committee, 2, new, 2,
                                DevApprovers(cluster.info).policy_digest("treasury"))
    reply = node.call("peer-2", "Reshare", reshare_body(treasury, new, 2, intent))
    # The joining peer-6 checks for itself, as does every peer of the old quorum.
    assert len(refused_by_every_peer(reply, "approvals_below_quorum", ("peer-1", "peer-2", "peer-3", "peer-6"))) >= 4
    assert shares(cluster, "treasury") == before


@pytest.mark.parametrize("case, request_new, request_t, approved_new, approved_t, lowering, reason", [
    ("lowering the threshold without consent", ALL[:5], 1, ALL[:5], 1, False, "threshold_lowering_not_consented"),
    ("approvals that name another committee (a swap)", ("peer-1", "peer-2", "peer-3", "peer-5", "peer-6"), 2,
     ("peer-1", "peer-2", "peer-3", "peer-4", "peer-6"), 2, False, "ceremony_intent_mismatch"),
    ("approvals that name another threshold", ALL, 2, ALL, 3, False, "ceremony_intent_mismatch"),
    ("shrinking to n-of-n with the quorum's approvals", ("peer-1", "peer-2", "peer-3"), 2, ("peer-1", "peer-2", "peer-3"), 2,
     False, "n_of_n_not_allowed"),
])
def test_an_approved_ceremony_that_is_not_this_request_or_breaks_a_floor_is_refused(
        cluster, node, treasury, approvers, case, request_new, request_t, approved_new, approved_t, lowering, reason):
    intent = cer.reshare_intent("treasury", treasury.public_key, treasury.committee, treasury.threshold, approved_new, approved_t,
                                approvers.policy_digest("treasury"), lowering)
    before = shares(cluster, "treasury")
    reply = node.call("peer-1", "Reshare", reshare_body(treasury, request_new, request_t, intent, approvers.approve(intent)))
    refused_by_every_peer(reply, reason, request_new)
    assert shares(cluster, "treasury") == before, case


def test_the_cold_vault_cannot_move_under_the_hot_vaults_rules(cluster, node, cold, approvers):
    before = shares(cluster, "cold")
    new = ("peer-2", "peer-3", "peer-4", "peer-5")
    # One fresh approval: the hot vault's quorum, not the cold one's.
    one = DevApprovers(cluster.info, approver_ids=["approver-1"])
    intent = cer.reshare_intent("cold", cold.public_key, cold.committee, 2, new, 2, one.policy_digest("cold"))
    reply = node.call("peer-1", "Reshare", reshare_body(cold, new, 2, intent, one.approve(intent)))
    refused_by_every_peer(reply, "approvals_below_quorum", new)
    # The quorum, but no delay: refused until a day after the quorum's signed times.
    reply = node.call("peer-1", "Reshare", reshare_body(cold, new, 2, intent, approvers.approve(intent)))
    refused_by_every_peer(reply, "delay_not_elapsed", new)
    # Approved a day ago, to a committee with peer-6, whose policy for "cold" is the hot one.
    past = DevApprovers(cluster.info, approved_at_ms=lambda: rq.now_ms() - DAY_MS - 60_000)
    new6 = ("peer-2", "peer-3", "peer-4", "peer-6")
    intent = cer.reshare_intent("cold", cold.public_key, cold.committee, 2, new6, 2, past.policy_digest("cold"))
    reply = node.call("peer-1", "Reshare", reshare_body(cold, new6, 2, intent, past.approve(intent)))
    assert refused_by_every_peer(reply, "vault_policy_mismatch", ("peer-6",)) == {"peer-6": "vault_policy_mismatch"}
    # Below the cold vault's floor, even approved and consented to.
    low = ALL[:4]
    intent = cer.reshare_intent("cold", cold.public_key, cold.committee, 2, low, 1, past.policy_digest("cold"), True)
    reply = node.call("peer-1", "Reshare", reshare_body(cold, low, 1, intent, past.approve(intent)))
    refused_by_every_peer(reply, "threshold_below_minimum", low)
    assert shares(cluster, "cold") == before


def test_key_generations_need_approvals_of_exactly_that_vault(cluster, node, approvers):
    committee = ("peer-1", "peer-2", "peer-3")
    refused_by_every_peer(node.call("peer-1", "Keygen", rq.keygen_request("k-1", committee, 1)), "ceremony_not_approved", committee)
    intent = cer.keygen_intent("k-1", committee, 1, approvers.policy_digest("k-1"))
    reply = node.call("peer-1", "Keygen", rq.keygen_request("k-1", committee, 1, ceremony=intent))
    refused_by_every_peer(reply, "approvals_below_quorum", committee)
    # Approvals of one key generation replayed for another vault, or another threshold.
    intent = cer.keygen_intent("k-1", committee, 1, approvers.policy_digest("k-1"))
    for vault_id, t in (("k-2", 1), ("k-1", 2)):
        body = rq.keygen_request(vault_id, committee, t, ceremony=intent, approvals=approvers.approve(intent))
        refused_by_every_peer(node.call("peer-1", "Keygen", body), "ceremony_intent_mismatch", committee)
    # n-of-n, approved: refused unless the policy names it.
    intent = cer.keygen_intent("k-3", ("peer-1", "peer-2"), 1, approvers.policy_digest("k-3"))
    reply = node.call("peer-1", "Keygen", rq.keygen_request("k-3", ("peer-1", "peer-2"), 1, ceremony=intent,
                                                           approvals=approvers.approve(intent)))
    refused_by_every_peer(reply, "n_of_n_not_allowed", ("peer-1", "peer-2"))
    assert all(shares(cluster, v) == dict.fromkeys(ALL) for v in ("k-1", "k-2", "k-3"))


def test_an_approved_rotation_2_of_3_to_3_of_5_keeps_the_key_and_the_new_committee_signs(cluster):
    client = cluster.client()
    old = client.keygen("rotating", ("peer-1", "peer-2", "peer-3"), 1)
    # peer-1 leaves, peers 4, 5, 6 join; any 3 of the 5 sign.
    new = client.reshare(old, ("peer-2", "peer-3", "peer-4", "peer-5", "peer-6"), 2, coordinator="peer-2")
    assert (new.public_key, new.chain_code) == (old.public_key, old.chain_code)
    assert new.committee == ("peer-2:1", "peer-3:1", "peer-4:1", "peer-5:1", "peer-6:1") and new.threshold == 2
    after = shares(cluster, "rotating")
    assert after["peer-1"] is None and all(after[p] for p in ALL[1:])
    keys = RecordKeys(new.public_key, new.chain_code)
    tx, intent = btc_withdrawal(keys, new.vault_id)
    approval = (rq.approve(intent, "approver-1", cluster.approver("approver-1")),)
    out = client.sign(new, tx, intent, approval, coordinator="peer-5")
    assert len(out) == 1 and out[0][1].public_key == keys.child_public_key((0, 0))
    with pytest.raises(SigningRefused) as e:
        client.sign(old, tx, intent, approval, coordinator="peer-1")
    assert "vault_unknown" in str(e.value)


def test_a_reshare_that_would_leave_the_old_committee_a_quorum_is_refused(cluster):
    """2-of-4 on peers 1-4, to peers 2, 5, 6: peer-1 coordinates with peer-2 as the old quorum;
    peers 3 and 4 take no part and would keep two old shares, a quorum of the old generation."""
    client = cluster.client()
    wide = client.keygen("wide", ALL[:4], 1)
    before = shares(cluster, "wide")
    with pytest.raises(SigningRefused) as e:
        client.reshare(wide, ("peer-2", "peer-5", "peer-6"), 1, coordinator="peer-1")
    assert "old_committee_would_keep_a_quorum" in str(e.value), e.value
    assert shares(cluster, "wide") == before


def test_old_shares_stay_until_the_new_committee_has_signed(cluster):
    """The new committee (peer-2, peer-5, peer-6) gets its shares, but peers 5 and 6 hang in
    the confirmation signing: the reshare is reported unconfirmed and the peers that were to
    leave keep their old shares."""
    client = cluster.client()
    old = client.keygen("confirm", ("peer-1", "peer-2", "peer-3"), 1)
    before = shares(cluster, "confirm")
    for rogue in ("peer-5", "peer-6"):
        cluster.set_faults(rogue, {"hold_at_round": 1, "protocol": "sign"})
    try:
        with pytest.raises(SigningRefused) as e:
            client.reshare(old, ("peer-2", "peer-5", "peer-6"), 1, coordinator="peer-2")
    finally:
        for rogue in ("peer-5", "peer-6"):
            cluster.set_faults(rogue, {})
    assert str(e.value).startswith("reshare_unconfirmed"), e.value
    after = shares(cluster, "confirm")
    assert after["peer-1"] == before["peer-1"] and after["peer-3"] == before["peer-3"], "an old share went before a signature"
    assert after["peer-5"] and after["peer-6"] and after["peer-2"] != before["peer-2"]
    # The coordinator's word is not enough: a Commit from it (its own certificate) without the new
    # committee's signature, or with one that is not over this reshare, is refused by the leaving
    # peer itself, and its old share stays.
    cid = re.findall(r"reshare_unconfirmed.*?session=([0-9a-f]{32})", cluster.stderr("peer-2"))[-1]
    forged = bytes(65)
    stub = peer_stub(cluster, as_peer="peer-2", to="peer-1")  # the old quorum: peer-2 and peer-1
    for sig in (b"", forged):
        ack = stub.Commit(pb.CommitRequest(session_id=cid, confirm_signature=sig), timeout=30)
        assert (ack.ok, ack.reason) == (False, "reshare_unconfirmed"), ack
    assert shares(cluster, "confirm") == after, "a leaving peer dropped its share on the coordinator's word"


def test_retiring_a_vault_needs_its_approvals_and_every_peer(cluster, node):
    client = cluster.client()
    vault = client.keygen("retiring", ("peer-1", "peer-2", "peer-3"), 1)
    before = shares(cluster, "retiring")
    body = rq.retire_request("retiring")
    body.update({"old_committee": list(vault.committee), "old_threshold": 1, "public_key": vault.public_key.hex()})
    refused_by_every_peer(node.call("peer-1", "Reshare", body), "ceremony_not_approved", ("peer-1", "peer-2", "peer-3"))
    # One approval, where the vault's highest band asks for two.
    one = DevApprovers(cluster.info, approver_ids=["approver-1"])
    intent, approvals = one.retire(vault)
    with pytest.raises(SigningRefused) as e:
        client.retire(vault, ceremony=intent, approvals=approvals)
    assert "approvals_below_quorum" in str(e.value)
    # A peer of the committee down: nothing is dropped anywhere.
    cluster.procs["peer-3"].stop()
    try:
        with pytest.raises(SigningRefused):
            client.retire(vault, coordinator="peer-1")
    finally:
        cluster.start("peer-3")
    assert shares(cluster, "retiring") == before

    def retired_once_peer_3_is_back() -> bool:
        try:
            client.retire(vault, coordinator="peer-1")
        except SigningRefused as exc:
            if "unreachable" in str(exc):  # peer-1's channel to the restarted peer-3 reconnects
                return False
            raise
        return True

    wait_until(retired_once_peer_3_is_back, 60, "peer-1 reaches the restarted peer-3 and the vault is retired")
    assert shares(cluster, "retiring") == dict.fromkeys(ALL)


def test_a_lost_peer_is_reshared_away_with_approvals_and_no_switch(cluster):
    """Recovery: peer-6 is gone; the other four and the approvals move the vault off it."""
    client = cluster.client()
    vault = client.keygen("recover", ("peer-3", "peer-4", "peer-5", "peer-6"), 2)
    cluster.procs["peer-6"].stop()
    try:
        new = client.reshare(vault, ("peer-2", "peer-3", "peer-4", "peer-5"), 2, coordinator="peer-3")
    finally:
        cluster.start("peer-6")
    assert new.public_key == vault.public_key and new.committee == ("peer-2:1", "peer-3:1", "peer-4:1", "peer-5:1")
    keys = RecordKeys(new.public_key, new.chain_code)
    tx, intent = btc_withdrawal(keys, new.vault_id)
    assert client.sign(new, tx, intent, (rq.approve(intent, "approver-1", cluster.approver("approver-1")),), coordinator="peer-2")
